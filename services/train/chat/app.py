"""`python -m services.train chat --config configs/train/chat_demo.yaml` (`make chat`): the chat demo in a browser.

A Gradio Blocks app (gradio from PyPI) on 127.0.0.1 only: add pictures (upload, or pick a demo picture), ask
questions, read the streamed answer and, beside it, the memory panel (panel.py). Nothing leaves the machine:
analytics, the version check, share links, server-side rendering, the MCP server, the PWA manifest, monitoring and
footer links are off, and the theme uses system fonts only (no web-font request).

The model is loaded before gradio is imported, so a missing run is one line (`train chat: error: ...; fix: make
demo ...`) after a second, not after gradio's import.
"""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from shared.errors import InputError
from shared.images import ImageIndex, ImageIndexError

from services.train.chat import panel, preflight
from services.train.chat.config import ChatConfig, ChatError
from services.train.chat.session import ChatInputError, Session

log = logging.getLogger(__name__)
# Read by gradio and huggingface_hub at import time: set before the first `import gradio`.
OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "GRADIO_SSR_MODE": "False", "GRADIO_SHARE": "False"}


def make_engine(cfg: ChatConfig):
    preflight.check(cfg)  # before torch is imported: a missing run is one line at once
    if cfg.model == "gemma":
        from services.train.chat.gemma_engine import GemmaEngine

        return GemmaEngine(cfg)
    from services.train.chat.bridge_engine import BridgeEngine

    return BridgeEngine(cfg)


def demo_pictures(cfg: ChatConfig) -> list[str]:
    """The first `gallery_size` pictures of `images` by image id (none when images is null)."""
    if cfg.images is None or cfg.gallery_size == 0:
        return []
    try:
        index = ImageIndex.scan(cfg.images)
    except ImageIndexError as e:
        raise ChatError(str(e.message), fix="run `make data-demo`, or set images=null (upload only)") from None
    return [str(index.path(i).resolve()) for i in index.ids()[: cfg.gallery_size]]


def build_app(engine, pictures: list[str]):
    """The Blocks app over one loaded engine; every browser session gets its own Session."""
    import gradio as gr

    def show(session: Session) -> str:
        return panel.render(session, engine.description)

    def add_picture(path: str | None, session: Session, chat: list, label: str | None = None):
        if not path:
            return session, chat, show(session), "ready"
        replaced = bool(session.pictures) and not session.turns_about(session.pictures[-1].number)
        picture = session.add_picture(path, label)
        chat = chat + [{"role": "user", "content": gr.Image(path)}]
        note = f"picture {picture.number}: {picture.label}" + (" (replaces the one not asked about)" if replaced
                                                                 else "")
        return session, chat, show(session), f"ready — {note}"

    def pick_demo(event: gr.SelectData, session: Session, chat: list):
        path = pictures[event.index]
        return add_picture(path, session, chat, f"demo {Path(path).name}")

    # gradio passes the click event to a parameter annotated gr.SelectData; with postponed annotations (a string
    # here, `gr` being local) it cannot resolve it, so give it the class itself
    pick_demo.__annotations__["event"] = gr.SelectData

    def ask(question: str, session: Session, chat: list):
        question = " ".join((question or "").split())
        if not question:
            yield session, chat, show(session), "", "ready — type a question first"
            return
        if not session.pictures:
            yield session, chat, show(session), question, "ready — add a picture first (upload or pick a demo one)"
            return
        chat = chat + [{"role": "user", "content": question}, {"role": "assistant", "content": "…"}]
        try:
            for partial in engine.respond(session, question):
                chat[-1] = {"role": "assistant", "content": partial or "…"}
                yield session, chat, show(session), "", "generating"
        except (ChatInputError, InputError) as e:
            yield session, chat[:-2], show(session), question, f"ready — {e}"
            return
        except Exception as e:  # the UI must not hang on "generating"; the traceback goes to the server log
            log.exception("chat: answering %r failed", question)
            yield session, chat[:-2], show(session), question, f"ready — error: {type(e).__name__}: {e}"
            return
        chat[-1] = {"role": "assistant", "content": session.turns[-1].answer or "(empty answer)"}
        yield session, chat, show(session), "", "ready"

    def reset():
        session = Session()
        return session, [], show(session), "ready — new conversation"

    with gr.Blocks(title="vdmem chat", analytics_enabled=False) as app:
        state = gr.State(lambda: Session())  # a callable: a fresh Session per browser session
        gr.Markdown(f"### vdmem chat — {engine.description}")
        with gr.Row():
            with gr.Column(scale=3):
                chat = gr.Chatbot(elem_id="chatbot", height=460, label="Dialogue")
                with gr.Row():
                    question = gr.Textbox(elem_id="question", placeholder="Ask about the pictures…", scale=5,
                                          show_label=False, lines=1, max_lines=3)
                    send = gr.Button("Send", elem_id="send", variant="primary", scale=1)
                status = gr.Textbox("ready", elem_id="status", label="status", interactive=False, max_lines=1)
                with gr.Row():
                    upload = gr.Image(type="filepath", sources=["upload"], elem_id="image-upload",
                                      label="Add a picture", height=180)
                    gallery = gr.Gallery(pictures, elem_id="demo-gallery", label="…or pick a demo picture",
                                         columns=6, height=180, allow_preview=False, interactive=False,
                                         visible=bool(pictures))
                new = gr.Button("New conversation", elem_id="reset")
            with gr.Column(scale=2):
                memory = gr.HTML(show(Session()), elem_id="memory-panel", label="Memory")
        picture_outputs = [state, chat, memory, status]
        upload.upload(add_picture, [upload, state, chat], picture_outputs)
        gallery.select(pick_demo, [state, chat], picture_outputs)
        outputs = [state, chat, memory, question, status]
        # one model, one answer at a time, whichever way the question was sent and from whichever browser
        send.click(ask, [question, state, chat], outputs, concurrency_limit=1, concurrency_id="model")
        question.submit(ask, [question, state, chat], outputs, concurrency_limit=1, concurrency_id="model")
        new.click(reset, None, picture_outputs)
    return app


def theme():
    import gradio as gr

    # system fonts only: the default theme's GoogleFont would make the browser ask fonts.googleapis.com
    return gr.themes.Default(
        font=[gr.themes.Font("ui-sans-serif"), gr.themes.Font("system-ui"), "sans-serif"],
        font_mono=[gr.themes.Font("ui-monospace"), gr.themes.Font("DejaVu Sans Mono"), "monospace"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(cfg: ChatConfig) -> None:
    """Load the model, then serve the app on 127.0.0.1 until interrupted."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    pictures = demo_pictures(cfg)
    engine = make_engine(cfg)
    app = build_app(engine, pictures)
    port = cfg.port or free_port()
    print(f"chat: http://127.0.0.1:{port}/ — {engine.description} (Ctrl-C stops it)", flush=True)
    app.queue(default_concurrency_limit=1).launch(
        server_name="127.0.0.1", server_port=port, share=False, inbrowser=False, ssr_mode=False, mcp_server=False,
        pwa=False, enable_monitoring=False, run_history=False, footer_links=[], show_error=True, quiet=True,
        allowed_paths=sorted({str(Path(p).parent) for p in pictures}), theme=theme())
