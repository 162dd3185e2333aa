"""Config and result dataclasses of memory retrieval (import them from shared.memory); light for any job config."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:
    import numpy as np


@dataclass
class ScoreWeights:
    """Weights of the min-max normalised components in the total score (0 switches a component off).

    Defaults were chosen on the demo's train split and the long-conversation dev conversation (bench/memory.py;
    docs/RETRIEVAL.md): relevance leads and the other three only break its ties. Larger prior weights (the earlier
    0.1 / 0.25 / 0.25) outvote relevance in long conversations, where they cost a quarter of the recall@10.
    """

    recency: float = 0.05
    frequency: float = 0.05
    saliency: float = 0.05
    relevance: float = 1.0


@dataclass
class MemoryConfig:
    """How memories are scored; embedded in every job config that retrieves (`retrieval.memory.*`)."""

    weights: ScoreWeights = field(default_factory=ScoreWeights)
    clock: Literal["turn", "seconds"] = "turn"  # unit of `now`, of `half_life` and of last access
    half_life: float = 3.0  # recency halves every `half_life` turns (or seconds)
    recency_from: Literal["last_access", "created"] = "last_access"
    recall_strength: float = 0.0  # MemoryBank-style: each recall stretches the half-life by this fraction
    update_on_retrieve: bool = True  # retrieve() counts an access and moves last access to `now`
    count_references: bool = True  # note_references() counts later questions naming a memory's words/picture
    relevance_on: Literal["question", "answer", "both"] = "both"  # which memory text the query is compared with
    picture_bonus: float = 1.0  # added to the relevance of memories shown on a picture the query names
    # Hybrid relevance (docs/RETRIEVAL.md): with embeddings, the cosine plus lexical_weight times the share of the
    # query's IDF mass found in the turn's words (without embeddings the lexical share alone, weight 1).
    lexical_weight: float = 0.5
    caption_weight: float = 0.5  # times the (hybrid) relevance of the caption of the picture a turn is about
    time_bonus: float = 1.0  # times how well a turn's time fits a time phrase of the query ("two weeks ago")
    speaker_bonus: float = 0.5  # added to turns by a speaker the query names ("what did Maya say ...")
    session_gap: float = 3 * 3600.0  # seconds of silence that start a new session ("in our first chat")
    type_weights: dict[str, float] = field(
        default_factory=lambda: {"attribute": 1.0, "other": 0.6, "yes_no": 0.3}
    )  # saliency prior by question type: an attribute answer carries more than a yes/no
    llm_saliency_weight: float = 0.0  # share of the optional LLM rating in saliency (0 = text-only)
    # Stores of at least this many memories (0 = never) score relevance first with int8 copies of the embeddings
    # (torch's quantised kernel, a quarter of the bytes) and rescore exactly every memory whose error bound could
    # change the answer: the top-k is the float32 one, faster (shared/memory/_screen.py, docs/RETRIEVAL.md).
    int8_screen_from: int = 250_000
    # Keys of earlier versions, accepted and ignored so configs saved with them still load (shared.config).
    retired_keys: ClassVar[frozenset[str]] = frozenset({"prefilter_dims", "prefilter_shortlist"})


@dataclass(frozen=True)
class Turn:
    """One conversation turn to remember (`MemoryStore.add_turns`); a VisDial round is its answer replying to its
    question: `Turn("red", speaker="answerer", reply_to="what color is it?", turn=3, image_id=7)`."""

    text: str  # what was said (in a question/answer exchange: the answer)
    speaker: str = ""  # who said it ("" = not recorded)
    time: float | None = None  # when, in epoch seconds (UTC): required with clock "seconds"; time phrases use it
    turn: int | None = None  # its number in the conversation (None = one more than the last stored turn)
    image_id: int | None = None  # the picture shared or talked about at this turn (None = none)
    caption: str | None = None  # that picture's caption (the first caption given for an image is kept)
    reply_to: str = ""  # what the turn answers (a VisDial question); scored with it, shown as Q: in reminders


@dataclass
class Memory:
    """One stored turn, as returned by `store.memory(i)`."""

    index: int
    turn: int
    question: str  # the turn's reply_to ("" when it replies to nothing)
    answer: str  # the turn's text
    image_id: int  # -1: no picture
    picture: int  # 1-based order in which the store first saw this image (0: no picture)
    access_count: int
    reference_count: int
    last_access: float
    speaker: str = ""
    time: float | None = None  # epoch seconds, when the turn carried one
    session: int = 0  # 1-based session (a new one after `session_gap` seconds of silence; 0: no times)


@dataclass
class GateConfig:
    """When a retrieved `<reminder>` is worth its tokens (`memory_needed`; docs/RETRIEVAL.md, "The reminder gate").

    A reminder fires only when the question needs the past: it refers back explicitly (`refers_back`, `pronouns`) or
    its best memory is relevant enough (`min_relevance`, a raw relevance calibrated on a TRAIN split with
    `calibrate_min_relevance`, never on the split it is judged on). Both off = never fires.
    """

    # fire on explicit references: an earlier picture ("the first picture" while another is shown), an earlier turn
    # ("your last answer", "turn 3"), a time or session ("two weeks ago", "last time") or words like earlier, again,
    # previously, "you said"
    refers_back: bool = True
    # also fire on a third-person pronoun ("is he smiling?", "what color is it?"): VisDial's usual way of referring
    # to what the dialog already named ("it" is not counted); off by default (16% of the bundled real VisDial val
    # questions fire on it)
    pronouns: bool = False
    # fire when the best retrieved memory's raw relevance (`Retrieved.relevance`) reaches this; None = never on
    # relevance alone
    min_relevance: float | None = None


@dataclass
class Retrieved:
    """A retrieved memory with its total score and normalised components; renders with shared.reminder.

    `relevance` is the raw (not normalised) relevance, comparable across queries: the reminder gate thresholds it
    (None when the relevance weight is 0 and relevance was not computed)."""

    index: int
    turn: int
    question: str
    answer: str
    image_note: str | None
    score: float
    components: dict[str, float]
    speaker: str = ""
    time: float | None = None
    relevance: float | None = None


@dataclass
class Scores:
    """Scores of the candidate memories: `total` (the weighted sum of min-max normalised components) per position.

    `raw[name]` holds each component before normalisation and `ranges[name]` its (min, max - min) over the
    candidates (span 0: all equal, normalised to 0); `component(name)` gives the normalised values.
    """

    indices: np.ndarray | None  # memory index of each position; None = every memory, in order
    total: np.ndarray
    raw: dict[str, np.ndarray]
    ranges: dict[str, tuple[float, float]]

    def component(self, name: str, positions: np.ndarray | None = None) -> np.ndarray:
        import numpy as np

        values = self.raw[name] if positions is None else self.raw[name][positions]
        lo, span = self.ranges[name]
        if not span:
            return np.zeros(len(values), dtype=np.float32)
        return np.clip((values - lo) / span, 0.0, 1.0).astype(np.float32)

    @property
    def components(self) -> dict[str, np.ndarray]:
        return {name: self.component(name) for name in self.raw}
