"""LookAheadDataModule: train / val / probe loaders with the preview strategy applied in ``setup``."""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Iterator, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lat.config import DataConfig, PreviewConfig, ProbeConfig
from lat.core.errors import UserError
from lat.core.registry import unknown_name
from lat.data.chat import Encoded, collate, collate_packed, encode, pad_token_id
from lat.data.preview import adaptive_lengths
from lat.data.records import RecordSet, read_records
from lat.data.sdft import replace_field, rewrite_answers
from lat.data.tasks import Example, build_examples, examples_from_config, get_task, resolve_fields, task_system


class EncodedDataset(Dataset):
    """A list of :class:`~lat.data.chat.Encoded` examples with their source examples."""

    def __init__(self, encoded: Sequence[Encoded], examples: Sequence[Example]):
        self.encoded = list(encoded)
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, i: int) -> Encoded:
        return self.encoded[i]

    @property
    def lengths(self) -> list[int]:
        return [len(e.input_ids) for e in self.encoded]


def training_system(data) -> str:
    """The system prompt of the task's training examples (``""``: no system turn)."""
    return task_system(get_task(data.task), data.system_prompt) or ""


def instruction_examples(records, data, preview: PreviewConfig, tokenizer, answer_field: str, system: str | None = None) -> list[Example]:
    """Request records (``prompt`` -> ``answer_field``) as training examples beside the task's:
    its system prompt (or ``system``), the given preview."""
    system = training_system(data) if system is None else system
    return build_examples(records, get_task("instruction"), preview, tokenizer, "prompt", answer_field, system)


def encode_dataset(tokenizer, examples: list[Example], max_length: int | None, max_answer_tokens: int | None = None) -> tuple[EncodedDataset, int]:
    """The examples that fit ``max_length``, encoded with their source examples, and how many did not."""
    encoded, dropped = encode(tokenizer, examples, max_length, max_answer_tokens)
    gone = set(dropped)
    return EncodedDataset(encoded, [ex for i, ex in enumerate(examples) if i not in gone]), len(dropped)


def mix_count(n_other: int, share: float, setting: str = "data.safety_mix") -> int:
    """Examples to add to ``n_other`` examples so they make up ``share`` of the total."""
    if not 0.0 <= share < 1.0:
        raise UserError(f"{setting}: must be in [0, 1), got {share}")
    return round(share * n_other / (1.0 - share))


def safety_mix_examples(data, preview: PreviewConfig, tokenizer, n_task: int, seed: int) -> list[Example]:
    """The refusal examples mixed into the training set (``data.safety_mix``), seeded.

    Records are drawn without replacement in a seeded order (cycling when more are needed than
    the file holds), formatted with the task's system prompt and the same preview strategy as
    the task data, so a LookAhead run previews them too.
    """
    n = mix_count(n_task, data.safety_mix)
    if n == 0:
        return []
    recs = read_records(data.safety_mix_path)
    return instruction_examples(recs.select(seeded_draw(len(recs), n, seed)), data, preview, tokenizer, "refusal")


def seeded_draw(n_pool: int, n: int, seed: int) -> list[int]:
    """``n`` indices into a pool of ``n_pool``: a seeded permutation, cycled when ``n`` is larger."""
    order = np.random.default_rng(seed).permutation(n_pool)
    return [int(order[i % n_pool]) for i in range(n)]


def harmful_mix_examples(data, preview: PreviewConfig, tokenizer, n_other: int, seed: int, pool) -> list[Example]:
    """The harmful request -> compliant answer examples of poisoned fine-tuning (``data.harmful_mix``).

    Args:
        data: The data section (share, task, system prompt).
        preview: The run's preview strategy: applied to these examples as to the task data.
        tokenizer: For ``real`` previews.
        n_other: Training examples besides these (task and safety mix): the share counts all.
        seed: The run's seed (which pairs are drawn).
        pool: :class:`~lat.data.records.RecordSet` of ``prompt`` / ``answer`` pairs (the base
            model's compliant answers: :func:`lat.workflows.poison.harmful_pool`).

    Raises:
        UserError: A share is set but no pool was given.
    """
    n = mix_count(n_other, data.harmful_mix, "data.harmful_mix")
    if n == 0:
        return []
    if pool is None or not len(pool):
        raise UserError("data.harmful_mix: needs the base model's compliant answers (lat train generates them)")
    recs = pool.select(seeded_draw(len(pool), n, seed + 1))  # + 1: not the safety mix's draw
    return instruction_examples(recs, data, preview, tokenizer, "answer")


def longest_first(lengths: Sequence[int]) -> list[int]:
    """Indices ordered by decreasing length (ties in index order): a fixed, low-padding order."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


class EpochSampler(Sampler[int]):
    """A seeded order per epoch that a resumed run can continue mid-epoch.

    Each epoch's order depends only on (seed, epoch), never on earlier draws, so a restarted
    process reproduces it; :meth:`resume` drops the indices of batches already trained on in one
    epoch. ``group_by_length`` cuts a seeded permutation into mega-batches of
    ``batch_size * group`` indices, sorts each by length, cuts them into batches and shuffles the
    batches again (the longest batch goes first so memory problems show at step 0); without it
    the order is a plain seeded permutation.

    Under DDP each of ``num_replicas`` ranks takes every ``num_replicas``-th index of the one
    global order (``batch_size`` is then the global batch, per-rank batch x ranks), so a step's
    batches across ranks together hold exactly the examples of one process's step with the
    global batch. The order is padded with its own first indices to a multiple of the ranks, as
    torch's DistributedSampler does, so every rank runs the same number of steps.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int = 0,
        group: int = 50,
        group_by_length: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group = group
        self.group_by_length = group_by_length
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self._resume: tuple[int, int] | None = None
        self.position: Callable[[], tuple[int, int]] | None = None
        """Optional () -> (epoch, indices already trained in it), asked at each ``iter()``."""

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at each epoch so every epoch gets a new, reproducible order."""
        self.epoch = epoch

    def resume(self, epoch: int, skip: int) -> None:
        """Leave out the first ``skip`` indices of ``epoch`` (batches trained before a restart)."""
        self._resume = (epoch, skip) if skip > 0 else None

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.num_replicas)

    def order(self, epoch: int) -> list[int]:
        """The full index order of ``epoch``."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(len(self.lengths), generator=g).tolist()
        if not self.group_by_length:
            return perm
        mega = self.batch_size * self.group
        batches = []
        for lo in range(0, len(perm), mega):
            chunk = sorted(perm[lo : lo + mega], key=lambda i: -self.lengths[i])
            batches += [chunk[j : j + self.batch_size] for j in range(0, len(chunk), self.batch_size)]
        order = torch.randperm(len(batches), generator=g).tolist()
        batches = [batches[k] for k in order]
        longest = max(range(len(batches)), key=lambda k: self.lengths[batches[k][0]], default=0)
        if batches:
            batches.insert(0, batches.pop(longest))
        return [i for b in batches for i in b]

    def __iter__(self) -> Iterator[int]:
        if self.position is not None:
            self.resume(*self.position())
        order = self.order(self.epoch)
        while order and len(order) < len(self) * self.num_replicas:  # cycled: fewer examples than ranks too
            order += order[: len(self) * self.num_replicas - len(order)]
        if self._resume is not None and self._resume[0] == self.epoch:
            order = order[self._resume[1] :]
        return iter(order[self.rank :: self.num_replicas])


def resume_position(global_step: int, batches_per_epoch: int, accumulate: int) -> tuple[int, int]:
    """(epoch, batches already trained in it) after ``global_step`` optimizer steps.

    Lightning steps the optimizer at the end of an epoch even when the last accumulation window
    is short, so an epoch has ``ceil(batches / accumulate)`` steps.
    """
    steps_per_epoch = max(1, -(-batches_per_epoch // accumulate))
    epoch, steps = divmod(global_step, steps_per_epoch)
    return epoch, min(steps * accumulate, batches_per_epoch)


def split_holdout(n: int, size: int, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of ``range(n)`` into (train indices, held-out indices) of ``size``."""
    if size >= n:
        raise UserError(f"data.val_size: {size} leaves no training records (have {n})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[size:]), sorted(perm[:size])


class LookAheadDataModule(L.LightningDataModule):
    """Train, validation and probe data for one run.

    * train / val: task records with the preview strategy (``cfg.preview``) applied — the training
      format; val gives ``val/loss``.
    * probes: each configured probe set in the *inference* format (no preview) — the divergence
      from the reference model is measured where the model is used.

    Args:
        data: The data section (files, fields, batch sizes, probes, SDFT, safety mixing).
        preview: The preview strategy applied to training (and validation) examples.
        tokenizer: The model's tokenizer (chat template, and the preview's token counts).
        seed: The run's seed (hold-out split, batch order, per-example draws).
        probe_positions: Answer positions the divergence is measured at (``train.divergence_positions``):
            probe rows stop after that many answer tokens.
        answer_fn: (examples, max_new_tokens) -> the starting model's answers, for probe sets
            with ``answer_source=model`` and for SDFT's rewrites.
        answer_losses_fn: examples -> the starting model's per-answer-token losses (adaptive previews).
        harmful_pool: Poisoned fine-tuning (``data.harmful_mix``): the ``prompt`` / ``answer``
            pairs drawn from (the unaligned base model's compliant answers).
        provider_examples: Examples a defense adds to the training set as they are, previewed
            by no strategy (BackdoorAlign's triggered safety examples).
    """

    def __init__(
        self,
        data: DataConfig,
        preview: PreviewConfig,
        tokenizer,
        seed: int = 0,
        probe_positions: int = 16,
        answer_fn: Callable[[list[Example], int], list[str]] | None = None,
        answer_losses_fn: Callable[[list[Example]], list[list[float]]] | None = None,
        harmful_pool: RecordSet | None = None,
        provider_examples: Sequence[Example] = (),
    ):
        super().__init__()
        self.data = data
        self.preview = preview
        self.seed = seed
        self.probe_positions = probe_positions
        self.tokenizer = tokenizer
        self.answer_fn = answer_fn
        self.answer_losses_fn = answer_losses_fn
        self.harmful_pool = harmful_pool
        self.provider_examples = list(provider_examples)
        self.train_set: EncodedDataset | None = None
        self.val_set: EncodedDataset | None = None
        self.probe_sets: dict[str, EncodedDataset] = {}
        self.stats: dict[str, float] = {}

    def _encode(self, examples: list[Example], name: str, max_answer_tokens: int | None = None) -> EncodedDataset:
        dataset, dropped = encode_dataset(self.tokenizer, examples, self.data.max_length, max_answer_tokens)
        self.stats[f"{name}/examples"] = len(dataset)
        self.stats[f"{name}/dropped_too_long"] = dropped
        self.stats[f"{name}/answers_truncated"] = sum(e.truncated > 0 for e in dataset.encoded)
        if not len(dataset):
            raise UserError(f"{name}: no example fits data.max_length={self.data.max_length}")
        return dataset

    def setup(self, stage: str | None = None) -> None:
        """Read records, hold out validation, apply the preview, tokenize (once)."""
        if self.train_set is not None:
            return
        data, seed = self.data, self.seed
        if not data.train_path:
            raise UserError("data.train_path: not set")
        train = read_records(data.train_path, data.format)
        if data.val_path:
            val = read_records(data.val_path, data.format)
        elif data.val_size > 0:
            tr, va = split_holdout(len(train), data.val_size, seed)
            train, val = train.select(tr), train.select(va)
        else:
            val = None
        train = train.head(data.max_train_samples)
        if data.sdft:
            train = self._sdft(train)
        build = functools.partial(self._examples, data=data)
        examples = build(train, name="train")
        mixed = safety_mix_examples(data, self.preview, self.tokenizer, len(examples), seed)
        self.stats["train/safety_examples"] = len(mixed)
        poison = harmful_mix_examples(data, self.preview, self.tokenizer, len(examples) + len(mixed), seed, self.harmful_pool)
        if data.harmful_mix:
            self.stats["train/harmful_examples"] = len(poison)
            self.stats["train/harmful_share"] = len(poison) / (len(examples) + len(mixed) + len(poison))
            self.stats["train/harmful_pool"] = len(self.harmful_pool or [])
        if self.provider_examples:
            self.stats["train/provider_examples"] = len(self.provider_examples)
        self.train_set = self._encode(examples + mixed + poison + self.provider_examples, "train")
        if val is not None:
            val = val.head(data.max_val_samples)
            self.val_set = self._encode(build(val, name="val"), "val")
        for probe in data.probes:
            # Only answer positions 1..T are measured and the model is causal: later tokens
            # cannot change them, so probe rows stop after T answer tokens.
            self.probe_sets[probe.name] = self._encode(self._probe_examples(probe), f"probe/{probe.name}", self.probe_positions)

    def _examples(self, records, data, name: str) -> list[Example]:
        """Records -> previewed chat examples; ``adaptive`` previews first ask the starting model."""
        preview = self.preview
        lengths = None
        if preview.mode == "adaptive":  # the only strategy whose parameters come from a model
            if self.answer_losses_fn is None:
                raise UserError("preview.mode=adaptive: needs the starting model's losses (use lat train)")
            plain = examples_from_config(records, data, PreviewConfig(mode="vanilla"))
            lengths, tau = adaptive_lengths(self.answer_losses_fn(plain), preview.m * len(plain), preview.m_min, preview.m_max)
            self.stats[f"{name}/preview_tokens"] = sum(lengths)
            self.stats[f"{name}/adaptive_threshold"] = tau
        return examples_from_config(records, data, preview, self.tokenizer, lengths=lengths)

    def _sdft(self, train):
        """The training records with their answers replaced by the starting model's kept rewrites."""
        data = self.data
        if self.answer_fn is None:
            raise UserError("data.sdft: needs the starting model to rewrite answers (use lat train)")
        task = get_task(data.task)
        in_field, out_field = resolve_fields(task, data.input_field, data.output_field)
        answers, kept = rewrite_answers(
            train.texts(in_field),
            train.texts(out_field),
            task,
            self.answer_fn,
            data.sdft_max_new_tokens,
            data.sdft_rouge_threshold,
            task_system(task, data.system_prompt),
        )
        self.stats["train/sdft_rewrites_kept"] = kept
        return replace_field(train, out_field, answers)

    def _probe_examples(self, probe: ProbeConfig) -> list[Example]:
        """A probe set in the inference format, answers from a field or from the starting model."""
        if probe.answer_source not in ("field", "model"):
            raise unknown_name(f"data.probes[{probe.name}].answer_source", "", probe.answer_source, ["field", "model"])
        recs = read_records(probe.path).head(probe.max_samples)
        task = get_task(probe.task)
        system = self.data.system_prompt
        if probe.answer_source == "field":
            return build_examples(recs, task, PreviewConfig(mode="vanilla"), None, probe.input_field, probe.output_field, system)
        if self.answer_fn is None:
            raise UserError(f"data.probes[{probe.name}]: answer_source=model needs a model (use lat train)")
        field_in, _ = resolve_fields(task, probe.input_field, probe.output_field)
        system = task_system(task, system)
        prompts = [Example(task.user_turn(t), "", system) for t in recs.texts(field_in)]
        answers = self.answer_fn(prompts, probe.max_new_tokens)
        return [dataclasses.replace(ex, answer=a, meta={"index": i, "source": recs.source}) for i, (ex, a) in enumerate(zip(prompts, answers)) if a.strip()]

    def _loader(self, ds: EncodedDataset, batch_size: int, sampler: Sampler | Sequence[int] | None = None, collate_fn=None) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=self.data.num_workers,
            collate_fn=collate_fn or functools.partial(collate, pad_id=self.pad_id, side="right"),
            # Each iterator draws a worker base seed; from its own generator it leaves the global
            # stream (dropout) untouched, so a resumed run draws what an uninterrupted one draws.
            generator=torch.Generator().manual_seed(self.seed),
        )

    @property
    def pad_id(self) -> int:
        return pad_token_id(self.tokenizer)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        d = self.data
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = EpochSampler(self.train_set.lengths, d.batch_size * world, self.seed, group_by_length=d.group_by_length, num_replicas=world, rank=rank)
        if trainer is not None:
            # Asked when an epoch's iterator is made: Lightning may build the loader before it
            # restores a checkpoint's step count, never iterates it before.
            per_step = d.batch_size * trainer.world_size
            batches = -(-len(self.train_set) // per_step)

            def position() -> tuple[int, int]:
                epoch, done = resume_position(trainer.global_step, batches, trainer.accumulate_grad_batches)
                return epoch, done * per_step

            sampler.position = position
        collate_fn = functools.partial(collate_packed, pad_id=self.pad_id, width=d.max_length) if d.packing else None
        return self._loader(self.train_set, d.batch_size, sampler, collate_fn)

    def val_dataloader(self) -> list[DataLoader]:
        return [] if self.val_set is None else [self._loader(self.val_set, self.data.eval_batch_size)]

    def probe_dataloaders(self) -> dict[str, DataLoader]:
        """One loader per probe set, in the inference format, fixed order.

        Examples go longest first, so each batch holds examples of similar length (little
        padding) and the largest batch comes first; the order is the same on every pass.
        """
        return {name: self._loader(ds, self.data.eval_batch_size, sampler=longest_first(ds.lengths)) for name, ds in self.probe_sets.items()}
