"""Preview strategies: the LookAhead Tuning data transformations (arXiv 2503.19041).

Every strategy maps columns of instructions and answers to new columns; it never looks at
anything but its arguments, so it is pure and batched. Registry by short name:

| name           | instruction I'             | answer O'   |
|----------------|----------------------------|-------------|
| ``vanilla``    | I                          | O           |
| ``real``       | I + C + first m tokens of O| O           |
| ``virtual``    | I + C + P                  | P + O       |
| ``real_range`` | as ``real``, m drawn per example from [m_min, m_max] (seeded) |
| ``virtual_pool``| as ``virtual``, P drawn per example from a pool (seeded)    |
| ``adaptive``   | as ``real``, m per example from the starting model's losses, total budget m x N |

"First m tokens of O" is exactly the paper's reference script: ``tokenizer.tokenize(O)[:m]``
converted back with ``tokenizer.convert_tokens_to_string`` (no special tokens added).
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from lat.config import PreviewConfig
from lat.core.errors import UserError
from lat.core.registry import Registry


def reference_prefix(answer: str, m: int, tokenizer) -> str:
    """The first ``m`` tokens of ``answer`` as a string, one record at a time.

    This is the paper's reference semantics, written plainly; :func:`answer_prefixes` must agree
    with it exactly and is what the library uses.
    """
    return tokenizer.convert_tokens_to_string(tokenizer.tokenize(answer)[:m])


def _window(m: int, attempt: int) -> int:
    """Characters of the answer tokenized on attempt ``attempt`` (0, 1, ...) for m tokens."""
    return (4 * m + 8) * 2**attempt


def _exact_head(encoding, m: int, whole: bool) -> bool:
    """Whether a window's first ``m`` tokens are provably those of the full text.

    True when the window is the whole text, or when the m-th token's pre-token (word) is followed
    by at least one complete pre-token inside the window: pre-tokenizers decide each split from
    the text up to one character past it, and each word is tokenized on its own.
    """
    if whole:
        return True
    words = encoding.word_ids
    if len(words) <= m or words[m - 1] is None:
        return False
    return max(x for x in words if x is not None) >= words[m - 1] + 2


# GPT-2's pre-tokenizer pattern (tokenizers' ``ByteLevel(use_regex=True)``) for ASCII text, where
# \p{L} is [A-Za-z], \p{N} is [0-9] and \s is the six ASCII White_Space characters.
_GPT2_ASCII_SPLIT = re.compile(
    r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^ \t\n\x0b\x0c\rA-Za-z0-9]+"
    r"|[ \t\n\x0b\x0c\r]+(?![^ \t\n\x0b\x0c\r])|[ \t\n\x0b\x0c\r]+"
)

_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def added_tokens_pattern(tokenizer) -> re.Pattern | None:
    """A pattern finding the tokenizer's added tokens (``<|im_end|>``, ...) in text, if any.

    The tokenizer cuts text at these before anything else, so texts holding one are tokenized
    whole: a window could cut one in half and see other pieces.
    """
    added = [t.content for t in tokenizer.backend_tokenizer.get_added_tokens_decoder().values()]
    return re.compile("|".join(map(re.escape, added))) if added else None


class _ByteLevelHeads:
    """Exact answer heads for byte-level BPE tokenizers (GPT-2 style, e.g. SmolLM2), ASCII text.

    Such a tokenizer splits text with a fixed pattern and runs BPE on each piece on its own, and
    its decoder maps every token character back to one byte. So for ASCII text the first m tokens
    are the pieces' tokens in order, and their string is the text up to the character where the
    m-th token ends. Pieces come from a plain ``re`` pattern equal to the tokenizer's on ASCII;
    each distinct piece is tokenized once (by the tokenizer itself) and remembered.
    """

    def __init__(self, tokenizer, added: re.Pattern | None):
        bt = tokenizer.backend_tokenizer
        self._pre, self._model = bt.pre_tokenizer, bt.model
        self._added = added  # the tokenizer's added_tokens_pattern
        self._ends: dict[str, list[int]] = {}

    @staticmethod
    def applies(tokenizer) -> bool:
        """Whether ``tokenizer`` has exactly the pipeline this class reproduces."""
        from tokenizers import decoders, models, pre_tokenizers

        bt = getattr(tokenizer, "backend_tokenizer", None)
        return (
            bt is not None
            and bt.normalizer is None
            and isinstance(bt.pre_tokenizer, pre_tokenizers.ByteLevel)
            and bt.pre_tokenizer.use_regex
            and not bt.pre_tokenizer.add_prefix_space
            and isinstance(bt.model, models.BPE)
            and bt.model.dropout is None
            and isinstance(bt.decoder, decoders.ByteLevel)
        )

    def _token_ends(self, piece: str) -> list[int] | None:
        """Cumulative character lengths of ``piece``'s tokens.

        None when the tokenizer does not keep ``piece`` as one piece, or its tokens do not spell
        it out (a byte missing from the vocabulary is dropped).
        """
        ends = self._ends.get(piece)
        if ends is None:
            splits = self._pre.pre_tokenize_str(piece)
            if len(splits) != 1:
                return None
            tokens = [t.value for t in self._model.tokenize(splits[0][0])]
            if "".join(tokens) != splits[0][0]:  # BPE without an unknown token drops bytes
                return None
            ends, total = [], 0
            for t in tokens:
                total += len(t)
                ends.append(total)
            self._ends[piece] = ends
        return ends

    def head(self, text: str, m: int) -> str | None:
        """The first ``m`` tokens of ``text`` as a string, or None where this path does not apply.

        Text may hold non-ASCII characters after the pieces used: a piece is decided by its own
        characters and the one after it, so pieces ending before the first non-ASCII character
        (and not right at it) are the tokenizer's.
        """
        if self._added is not None and self._added.search(text):
            return None
        ascii_end = len(text) if text.isascii() else _NON_ASCII.search(text).start()  # type: ignore[union-attr]  # not ASCII: a match exists
        need = m
        for match in _GPT2_ASCII_SPLIT.finditer(text, 0, ascii_end):
            if match.end() == ascii_end < len(text):
                return None
            ends = self._token_ends(match.group())
            if ends is None:
                return None
            if len(ends) >= need:
                return text[: match.start() + ends[need - 1]]
            need -= len(ends)
        return text if ascii_end == len(text) else None


def answer_prefixes(answers: Sequence[str], ms: Sequence[int], tokenizer) -> list[str]:
    """The first ``ms[i]`` tokens of ``answers[i]``, as strings, for all records at once.

    Byte-level BPE tokenizers take :class:`_ByteLevelHeads` where the head is ASCII. Other fast
    tokenizers (and other answers) tokenize a short window at the start of every answer in
    one batched call (the whole answer where it holds an added token) and keep the result where :func:`_exact_head` proves it exact; the rest are
    retried with windows twice as long, and finally with the whole answer. Tokenizers that do
    not split into words (``word_ids`` all equal) thus end up tokenizing in full, still batched.
    Slow tokenizers fall back to :func:`reference_prefix`.

    Args:
        answers: N answer strings.
        ms: N preview lengths (tokens), each >= 1.
        tokenizer: A Hugging Face tokenizer.

    Returns:
        N prefix strings, equal to ``reference_prefix(answers[i], ms[i], tokenizer)``.
    """
    if not getattr(tokenizer, "is_fast", False):
        return [reference_prefix(a, m, tokenizer) for a, m in zip(answers, ms)]
    out: list[str | None] = [None] * len(answers)
    added = added_tokens_pattern(tokenizer)
    if _ByteLevelHeads.applies(tokenizer):
        heads = _ByteLevelHeads(tokenizer, added)
        out = [heads.head(a, m) for a, m in zip(answers, ms)]
    whole = {i for i, h in enumerate(out) if h is None and added is not None and added.search(answers[i])}
    todo = [i for i, h in enumerate(out) if h is None]
    attempt = 0
    while todo:
        last = attempt == 4
        windows = [answers[i] if last or i in whole else answers[i][: _window(ms[i], attempt)] for i in todo]
        encodings = tokenizer.backend_tokenizer.encode_batch(windows, add_special_tokens=False)
        retry = []
        for i, w, e in zip(todo, windows, encodings):
            if last or _exact_head(e, ms[i], len(w) == len(answers[i])):
                out[i] = tokenizer.convert_tokens_to_string(e.tokens[: ms[i]])
            else:
                retry.append(i)
        todo, attempt = retry, attempt + 1
    return out  # type: ignore[return-value]


def example_rng(seed: int, key: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the example's ``key`` (its text).

    Drawing per example from its own generator keeps a draw the same however records are
    ordered, filtered or split.
    """
    return np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])


@dataclass(frozen=True)
class Previewed:
    """Columns produced by a strategy.

    Attributes:
        instructions: N instructions I'.
        answers: N answers O'.
        m: N preview lengths in tokens for ``real`` strategies (``None`` otherwise).
        prefixes: N virtual prefixes P for ``virtual`` strategies (``None`` otherwise).
        masked_chars: With ``mask_preview``: N counts of leading answer characters that carry no
            loss (the previewed head, or P); ``None`` otherwise.
        dropped: With preview ``dropout``: N flags, True where the preview was dropped (the
            instruction left unmodified).
    """

    instructions: list[str]
    answers: list[str]
    m: list[int] | None = None
    prefixes: list[str] | None = None
    masked_chars: list[int] | None = None
    dropped: list[bool] | None = None


Strategy = Callable[..., Previewed]
"""(instructions, answers, cfg, tokenizer, lengths) -> Previewed; ``lengths`` (per-example m) is
read by ``adaptive`` only."""


STRATEGIES: Registry[Strategy] = Registry("strategy", setting="preview.mode")
"""Preview strategies by name; each registered with ``reads``: the PreviewConfig fields it reads
(runs differing only in other fields are the same run)."""


@STRATEGIES.register("vanilla", reads=())
def vanilla(instructions: Sequence[str], answers: Sequence[str], cfg: PreviewConfig, tokenizer=None, lengths=None) -> Previewed:
    """I' = I, O' = O."""
    return Previewed(list(instructions), list(answers))


def _real(instructions, answers, ms: list[int], cfg: PreviewConfig, tokenizer) -> Previewed:
    if tokenizer is None:
        raise UserError(f"preview.mode={cfg.mode} needs a tokenizer (model.name_or_path or --tokenizer-path)")
    heads = answer_prefixes(answers, ms, tokenizer)
    masked = [len(h) for h in heads] if cfg.mask_preview else None
    return Previewed([i + cfg.connector + h for i, h in zip(instructions, heads)], list(answers), m=ms, masked_chars=masked)


@STRATEGIES.register("real", reads=("m", "connector"))
def real(instructions: Sequence[str], answers: Sequence[str], cfg: PreviewConfig, tokenizer=None, lengths=None) -> Previewed:
    """I' = I + C + O[:m] (m tokens of the model's tokenizer), O' = O."""
    return _real(instructions, answers, [cfg.m] * len(answers), cfg, tokenizer)


@STRATEGIES.register("real_range", reads=("m_min", "m_max", "connector", "seed"))
def real_range(instructions: Sequence[str], answers: Sequence[str], cfg: PreviewConfig, tokenizer=None, lengths=None) -> Previewed:
    """As :func:`real` with m drawn uniformly from [m_min, m_max] per example (seeded)."""
    ms = [int(example_rng(cfg.seed, i + "\x00" + a).integers(cfg.m_min, cfg.m_max + 1)) for i, a in zip(instructions, answers)]
    return _real(instructions, answers, ms, cfg, tokenizer)


def _virtual(instructions, answers, prefixes: list[str], cfg: PreviewConfig) -> Previewed:
    return Previewed(
        [i + cfg.connector + p for i, p in zip(instructions, prefixes)],
        [p + a for p, a in zip(prefixes, answers)],
        prefixes=prefixes,
        masked_chars=[len(p) for p in prefixes] if cfg.mask_preview else None,
    )


@STRATEGIES.register("virtual", reads=("prefix", "connector"))
def virtual(instructions: Sequence[str], answers: Sequence[str], cfg: PreviewConfig, tokenizer=None, lengths=None) -> Previewed:
    """I' = I + C + P, O' = P + O."""
    return _virtual(instructions, answers, [cfg.prefix] * len(answers), cfg)


@STRATEGIES.register("virtual_pool", reads=("prefix_pool", "connector", "seed"))
def virtual_pool(instructions: Sequence[str], answers: Sequence[str], cfg: PreviewConfig, tokenizer=None, lengths=None) -> Previewed:
    """As :func:`virtual` with P drawn uniformly from ``prefix_pool`` per example (seeded)."""
    pool = list(cfg.prefix_pool)
    picks = [pool[int(example_rng(cfg.seed, i + "\x00" + a).integers(len(pool)))] for i, a in zip(instructions, answers)]
    return _virtual(instructions, answers, picks, cfg)


@STRATEGIES.register("adaptive", reads=("m", "m_min", "m_max", "connector"))
def adaptive(instructions: Sequence[str], answers: Sequence[str], cfg: PreviewConfig, tokenizer=None, lengths=None) -> Previewed:
    """As :func:`real` with m per example given by ``lengths`` (see :func:`adaptive_lengths`)."""
    if lengths is None:
        raise UserError(
            "preview.mode=adaptive: m per example comes from the starting model's losses; "
            "it runs inside lat train / lat run (use real or real_range with lat preview)"
        )
    return _real(instructions, answers, [int(m) for m in lengths], cfg, tokenizer)


def adaptive_lengths(losses: Sequence[Sequence[float]], budget: int, m_min: int, m_max: int) -> tuple[list[int], float]:
    """Per-example preview lengths from the starting model's per-token losses, within a budget.

    Example i previews its leading answer tokens up to the first one the starting model finds
    easy (loss below a threshold tau), clipped to [m_min, m_max]. tau is the smallest threshold
    whose total preview length fits ``budget`` tokens: the previews go to the examples whose
    openings the model finds hardest, which is where fine-tuning would move it most.

    Args:
        losses: N lists of per-answer-token losses (nats), in answer order.
        budget: Total preview tokens allowed (e.g. ``preview.m * N``).
        m_min: Smallest m per example (>= 1).
        m_max: Largest m per example.

    Returns:
        (N preview lengths, tau). With a budget below ``m_min * N`` every example gets ``m_min``
        (tau = inf).
    """
    # m_i(tau) = number of leading positions whose running minimum loss is >= tau
    prefix_min = [np.minimum.accumulate(np.asarray(row, dtype=np.float64)) if len(row) else np.zeros(0) for row in losses]

    def lengths(tau: float) -> list[int]:
        return [int(min(max(int((pm >= tau).sum()), m_min), m_max)) for pm in prefix_min]

    candidates = np.unique(np.concatenate([*prefix_min, [np.inf]]))
    lo, hi = 0, len(candidates) - 1  # sum(lengths) is non-increasing in tau; candidates[hi] = inf fits
    while lo < hi:
        mid = (lo + hi) // 2
        if sum(lengths(float(candidates[mid]))) <= budget:
            hi = mid
        else:
            lo = mid + 1
    tau = float(candidates[lo])
    return lengths(tau), tau


COMMON_FIELDS = ("mask_preview", "mask_answer_tokens", "dropout")
"""PreviewConfig fields every strategy reads (a changed one makes a different run)."""


def strategy_params(preview: dict) -> dict:
    """A preview section (as a dict) reduced to ``mode`` and the fields its strategy reads."""
    used = STRATEGIES.meta(preview.get("mode", "")).get("reads", ()) + COMMON_FIELDS
    return {k: v for k, v in preview.items() if k == "mode" or k in used}


def validate(cfg: PreviewConfig) -> None:
    """Raise a one-line UserError for an unknown strategy or an out-of-range parameter."""
    STRATEGIES.check(cfg.mode)
    if cfg.mode == "real" and cfg.m <= 0:
        raise UserError(f"preview.m: must be >= 1, got {cfg.m}")
    if cfg.mode in ("real_range", "adaptive") and not 1 <= cfg.m_min <= cfg.m_max:
        raise UserError(f"preview.m_min/m_max: need 1 <= m_min <= m_max, got {cfg.m_min}..{cfg.m_max}")
    if cfg.mode == "virtual_pool" and not cfg.prefix_pool:
        raise UserError("preview.prefix_pool: empty; give at least one prefix")
    if cfg.mask_answer_tokens < 0:
        raise UserError(f"preview.mask_answer_tokens: must be >= 0, got {cfg.mask_answer_tokens}")
    if cfg.mask_preview and cfg.mode in ("vanilla",):
        raise UserError("preview.mask_preview: vanilla has no preview to mask; use preview.mask_answer_tokens=K")


def apply_preview(instructions: Sequence[str], answers: Sequence[str], cfg: PreviewConfig, tokenizer=None, lengths: Sequence[int] | None = None) -> Previewed:
    """Apply the strategy named by ``cfg.mode`` to N instruction/answer pairs.

    Args:
        instructions: N instructions (the task's input field, before any chat formatting).
        answers: N answers (the task's output field).
        cfg: Strategy name and parameters.
        tokenizer: The model's tokenizer (needed by ``real`` strategies).
        lengths: N preview lengths for ``adaptive`` (from :func:`adaptive_lengths`).

    Returns:
        The new columns.
    """
    validate(cfg)
    out = STRATEGIES.get(cfg.mode)(instructions, answers, cfg, tokenizer, lengths)
    return drop_previews(out, instructions, answers, cfg) if cfg.dropout > 0 else out


def drop_previews(out: Previewed, instructions: Sequence[str], answers: Sequence[str], cfg: PreviewConfig) -> Previewed:
    """Preview dropout: a ``cfg.dropout`` share of examples (each drawn from a generator seeded
    by ``cfg.seed`` and the example's text) gets its original instruction back; answers and
    loss masks stay as the strategy made them."""
    dropped = [bool(example_rng(cfg.seed, "dropout\x00" + i + "\x00" + a).random() < cfg.dropout) for i, a in zip(instructions, answers)]
    new = [orig if d else ins for orig, ins, d in zip(instructions, out.instructions, dropped)]
    return dataclasses.replace(out, instructions=new, dropped=dropped)


def preview_records(records: Sequence[dict], input_field: str, output_field: str, cfg: PreviewConfig, tokenizer=None) -> list[dict]:
    """Apply a strategy to records, keeping every other field (the reference script's output).

    The caller validates the fields first (see :meth:`lat.data.records.RecordSet.texts`).
    """
    out = apply_preview([r[input_field] for r in records], [r[output_field] for r in records], cfg, tokenizer)
    return [{**r, input_field: i, output_field: a} for r, i, a in zip(records, out.instructions, out.answers)]
