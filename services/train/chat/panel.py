"""The memory panel beside the chat: plain HTML from a Session (no gradio, no torch; tests read it directly).

For the last answered question it shows the reminders shared.memory retrieved with their four component scores and
whether they were used (and the gate, when the run has one), the memory-bank slots the bridge attended to with their
sizes, and the top candidate answers with their log-probs; above that, every turn so far and the pictures shown.
Element ids and classes are what tests/browser reads.
"""
from __future__ import annotations

from html import escape

from shared.memory import COMPONENTS

from services.train.chat.session import MemoryView, Session


# compact tables: the panel sits beside the chat, so the four score columns must fit in its width
STYLE = ("<style>#memory-tables table{border-collapse:collapse;width:100%;font-size:.8em;margin-bottom:.6em}"
         "#memory-tables th,#memory-tables td{border:1px solid #ccc;padding:2px 4px;text-align:left}"
         "#memory-tables h4{margin:.6em 0 .2em}#memory-tables p{margin:.2em 0;font-size:.85em}</style>")
SHORT = {"recency": "rec", "frequency": "freq", "saliency": "sal", "relevance": "rel"}


def _table(table_id: str, header: list[str], rows: list[str], empty: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(rows) or f'<tr class="empty"><td colspan="{len(header)}">{escape(empty)}</td></tr>'
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _turns(session: Session) -> str:
    rows = [f'<tr class="mem-turn" data-turn="{t.number}"><td>{t.number}</td><td>{t.picture}</td>'
            f"<td>{escape(t.question)}</td><td>{escape(t.answer)}</td></tr>" for t in session.turns]
    return _table("mem-turns", ["turn", "picture", "question", "answer"], rows, "no turns yet")


def _reminders(view: MemoryView) -> str:
    rows = []
    for r in view.reminders:
        parts = "".join(f"<td>{r.components[c]:.2f}</td>" if c in r.components else "<td>–</td>" for c in COMPONENTS)
        rows.append(f'<tr class="mem-reminder" data-turn="{r.turn}" data-used="{str(r.used).lower()}">'
                    f"<td>{r.turn}</td><td>{escape(r.picture or '')}</td><td>{escape(r.question)}</td>"
                    f"<td>{escape(r.answer)}</td><td>{r.score:.3f}</td>{parts}<td>{'yes' if r.used else 'no'}</td>"
                    "</tr>")
    return _table("mem-reminders", ["turn", "pic", "question", "answer", "score", *(SHORT[c] for c in COMPONENTS),
                                    "used"], rows, "nothing to recall yet (first turn)")


def _gate_line(view: MemoryView) -> str:
    if view.gate is not None:
        state = f"gate {view.gate}"
    else:
        used = sum(r.used for r in view.reminders)
        state = f"{used} of {len(view.reminders)} used" if view.reminders else "none retrieved"
    return f'<p id="mem-gate">reminders: {escape(view.reminder_mode)} — {escape(state)}</p>'


def _bank(view: MemoryView) -> str:
    if not view.bank_length:
        return '<p id="mem-bank-off">no memory bank</p>'
    rows = [f'<tr class="mem-slot" data-size="{s.size}"><td>{s.slot}</td><td>{s.size}</td>'
            f"<td>{s.first_turn if s.first_turn == s.last_turn else f'{s.first_turn}–{s.last_turn}'}</td></tr>"
            for s in view.bank]
    used = f"{len(view.bank)} of {view.bank_length} slots hold past turns"
    query = (f"; Q-Former query banks: {', '.join(map(str, view.query_bank_sizes))} slots"
             if view.query_bank_sizes else "")
    return (f"<p>{escape(used + query)}</p>"
            + _table("mem-slots", ["slot", "size (turns merged)", "turns"], rows, "empty (first turn)"))


def _candidates(view: MemoryView) -> str:
    rows = [f'<tr class="mem-candidate"><td>{escape(text)}</td><td>{logprob:.3f}</td></tr>'
            for text, logprob in view.candidates]
    return _table("mem-candidates", ["answer", "log-prob"], rows, "no ranking")


def render(session: Session, engine: str = "") -> str:
    """The whole panel for the session's state after its last turn."""
    pictures = ", ".join(f"{p.number}: {escape(p.label)}" for p in session.pictures) or "none yet"
    parts = [STYLE, '<div id="memory-tables">',
             f'<h4 id="mem-summary">Memory: {len(session.turns)} turns, {len(session.pictures)} pictures</h4>',
             f"<p>{escape(engine)}</p>" if engine else "",
             f'<p id="mem-pictures">pictures — {pictures}</p>', _turns(session)]
    last = session.turns[-1] if session.turns else None
    if last is not None and last.memory is not None:
        view = last.memory
        parts += [f"<h4>Recalled for turn {last.number}: “{escape(last.question)}”</h4>", _gate_line(view),
                  _reminders(view), "<h4>Memory bank</h4>", _bank(view), "<h4>Top candidate answers</h4>",
                  _candidates(view)]
        parts += [f'<p class="mem-note">{escape(n)}</p>' for n in view.notes]
        if view.reminders:
            parts.append('<p class="mem-note">score = the weighted sum of the four components, each min-max '
                         "normalised over the stored turns (with one stored turn every component is 0)</p>")
        parts.append(f"<details><summary>prompt text</summary><pre>{escape(view.prompt)}</pre></details>")
    parts.append("</div>")
    return "".join(parts)
