"""Acquire a classification skill on an encoder base: LoRA on attention plus a linear head.

The task model is the base's ``AutoModel`` (an encoder such as BERT), the attention-mask
weighted mean of its last hidden state (the pooling sentence-transformers models such as
all-MiniLM-L6-v2 were trained with), and a linear head ``hidden -> n_labels``. PEFT wraps
the encoder's attention linear layers with LoRA (B starts at zero) and the head starts at
zero, so training starts from the uniform predictor on an unchanged base. Both are trained
jointly with cross-entropy through the shared loop (``acquire/loop.py``). With
``head="labels"`` the head is instead the label names' own sentence embeddings, frozen
(:func:`label_head`): the base alone is then a zero-shot classifier and only the encoder
learns, as in prompt-based fine-tuning.

The skill is an ordinary ``lora`` skill: its ΔW merges into the base like any other, and
the head, which belongs to the skill and not to the base, travels as ``head.weight`` and
``head.bias`` (``Skill.head()``). Labels are ``FilesWorld.labels(task)`` (sorted); a
label's class index is its position in that list, recorded in the skill's config.

Dropout in the encoder is switched off while training (as ``lora_dropout`` is 0), so a run
resumed from a checkpoint gives exactly the tensors of an uninterrupted run.

Cost on a CPU: every text is tokenized once, and a batch is padded to its own longest text
(not to ``max_length``). With ``val_every`` > 0 and a train split of at least
:data:`MIN_VALIDATION_POOL` rows, one in :data:`VALIDATION_MODULUS` train rows (by the
sha256 of the text) is held out of training as a validation set, scored every
``val_every`` steps, and training stops once ``patience`` scores in a row fail to beat the
best (``loop.stalled``): ``steps`` is then a ceiling. Smaller (few-shot) pools train for
``steps`` exactly, on every row.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..base import Base
from ..skill import Skill, SkillError, canonical_json
from ..worlds import get_world, pinned_args
from ..worlds.base import Example
from .data import Sampler, check_encodable
from .loop import LoopConfig, train
from .lora import lora_tensors, train_metrics

if TYPE_CHECKING:
    from ..worlds.base import World

# Attention linear layers by architecture family, matched as PEFT does (name == t or
# name ends with "." + t). BERT/RoBERTa/ELECTRA; DistilBERT; DeBERTa-v2; Llama-like.
ATTENTION_TARGETS = (
    "query", "key", "value", "attention.output.dense",
    "q_lin", "k_lin", "v_lin", "out_lin",
    "query_proj", "key_proj", "value_proj",
    "q_proj", "k_proj", "v_proj", "o_proj",
)


@dataclass(frozen=True)
class ClassifierRecipe:
    """Everything that decides a classification skill's tensors.

    ``target_modules=None`` means the attention linear layers found in the base; the
    trained skill's recipe records the list that was used.
    """

    task: str
    world: str = "files"
    world_args: dict = field(default_factory=dict)
    rank: int = 8
    alpha: int = 16
    steps: int = 100
    lr: float = 5e-3
    batch_size: int = 16
    max_length: int = 64
    seed: int = 0
    target_modules: list[str] | None = None
    warmup: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    val_every: int = 0      # > 0: early stopping on a validation slice of the train split
    patience: int = 2
    full: bool = False      # fine-tune every encoder-block weight (a delta skill), not LoRA
    head: str = "linear"    # "linear": trained from zeros; "labels": the label words, frozen

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise SkillError(f"classifier head must be one of {', '.join(HEADS)}, got {self.head!r}")
        object.__setattr__(self, "world_args", pinned_args(self.world, self.world_args))

    def as_dict(self) -> dict:
        """The recipe as stored; ``head`` at its default is left out, so skills stored before
        the field existed keep their identity."""
        out = {"method": "full-classifier" if self.full else "lora-classifier", **asdict(self)}
        if self.head == "linear":
            del out["head"]
        return out

    def loop(self) -> LoopConfig:
        return LoopConfig.of(self)

    def key(self, base: Base) -> str:
        """Identity of this run on this base (names its checkpoint directory)."""
        blob = canonical_json([base.fingerprint, self.as_dict()])
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


HEADS = ("linear", "labels")
LABEL_SCALE = 20.0   # the label-word head's logit scale: 20 × cosine, sentence-transformers' usual


@torch.no_grad()
def label_head(encoder: nn.Module, tokenizer, labels: Sequence[str], texts: Sequence[str],
               max_length: int) -> nn.Linear:
    """A frozen zero-shot head from the label words (the analogue, for a sentence encoder, of
    prompt-based fine-tuning's label words; Gao et al. 2021, as Panigrahi et al. 2023 use):
    row c is ``LABEL_SCALE · ê_c / mean‖x‖`` with ê_c the unit sentence embedding of label
    c's own name and mean‖x‖ the mean norm of ``texts``' embeddings, bias 0. Its logits are
    ≈ ``LABEL_SCALE`` × the cosine between a text and each label name, so the unchanged base
    already classifies, and fine-tuning can move only the encoder."""
    def embed(batch: Sequence[str]) -> torch.Tensor:
        enc = encode_texts(tokenizer, batch, max_length)
        return mean_pool(encoder(**enc).last_hidden_state.float(), enc["attention_mask"])

    names = embed(list(labels))
    unit = names / names.norm(dim=1, keepdim=True).clamp(min=1e-12)
    norm = torch.cat([embed(texts[i:i + 64]).norm(dim=1) for i in range(0, len(texts), 64)])
    head = nn.Linear(unit.shape[1], len(labels))
    head.weight.copy_(LABEL_SCALE * unit / norm.mean().clamp(min=1e-12))
    head.bias.zero_()
    head.requires_grad_(False)
    return head


VALIDATION_MODULUS = 9
MIN_VALIDATION_POOL = 200


def split_validation(pool: Sequence[Example]) -> tuple[list[Example], list[Example]]:
    """``(train, validation)``: the rows whose text's sha256 is 0 mod
    :data:`VALIDATION_MODULUS` are validation (a fixed slice, the same for every seed)."""
    def held(ex: Example) -> bool:
        return int(hashlib.sha256(ex.prompt.encode()).hexdigest(), 16) % VALIDATION_MODULUS == 0
    return [ex for ex in pool if not held(ex)], [ex for ex in pool if held(ex)]


class Encoded:
    """Texts tokenized once (truncated, unpadded); ``batch`` pads a subset to its longest."""

    def __init__(self, tokenizer, texts: Sequence[str], max_length: int):
        unique = sorted(set(texts))
        ids = tokenizer(unique, truncation=True, max_length=max_length)["input_ids"]
        self.ids = dict(zip(unique, ids, strict=True))
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def batch(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        rows = [self.ids[t] for t in texts]
        width = max((len(r) for r in rows), default=0)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, :len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention-mask weighted mean over tokens: ``[B, T, H], [B, T] -> [B, H]``.

    Padding positions (mask 0) are ignored; an all-padding row gives zeros.
    """
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def attention_targets(model: nn.Module) -> list[str]:
    """The entries of :data:`ATTENTION_TARGETS` that name a linear layer of ``model``."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    found = sorted(t for t in ATTENTION_TARGETS
                   if any(n == t or n.endswith("." + t) for n in names))
    if not found:
        raise SkillError(
            f"{type(model).__name__}: no attention linear layers skillbank knows "
            f"({', '.join(ATTENTION_TARGETS)}); pass target_modules explicitly"
        )
    return found


def classifier_config(recipe: ClassifierRecipe, labels: Sequence[str]) -> dict:
    """The PEFT LoraConfig fields (as ``lora_config`` records them) plus the head's spec
    (a full fine-tune: the head's spec only)."""
    if recipe.full:
        return {"task_type": "SEQ_CLS", "labels": list(labels), "pooling": "mean",
                "max_length": recipe.max_length, "fine_tuned": "encoder blocks"}
    return {"peft_type": "LORA", "r": recipe.rank, "lora_alpha": recipe.alpha,
            "target_modules": sorted(recipe.target_modules or []), "lora_dropout": 0.0,
            "bias": "none", "fan_in_fan_out": False, "use_rslora": False,
            "task_type": "SEQ_CLS", "labels": list(labels), "pooling": "mean",
            "max_length": recipe.max_length}


class EncoderClassifier(nn.Module):
    """``encoder`` + mean pooling + ``head``; ``forward`` returns ``.loss`` and ``.logits``."""

    def __init__(self, encoder: nn.Module, head: nn.Linear):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor | None = None):
        from transformers.modeling_outputs import SequenceClassifierOutput

        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = self.head(mean_pool(hidden.float(), attention_mask))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def hidden_size(model: nn.Module) -> int:
    cfg = model.config
    for attr in ("hidden_size", "dim", "d_model"):
        if isinstance(getattr(cfg, attr, None), int):
            return getattr(cfg, attr)
    raise SkillError(f"{type(model).__name__}: cannot tell its hidden size from the config")


def encode_texts(tokenizer, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                    return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def label_indices(examples: Sequence[Example], labels: Sequence[str]) -> torch.Tensor:
    index = {label: i for i, label in enumerate(labels)}
    missing = sorted({ex.target for ex in examples} - set(index))
    if missing:
        raise SkillError(f"label(s) {', '.join(map(repr, missing))} not among the skill's "
                         f"labels {list(labels)}")
    return torch.tensor([index[ex.target] for ex in examples], dtype=torch.long)


def classification_world(world: World, task: str, base: Base) -> list[str]:
    """The task's labels; a one-line error unless ``world`` is a classification world and
    ``base`` an encoder."""
    if getattr(world, "kind", "") != "classification":
        raise SkillError(f"task {task!r} of world {world.name!r} is not a classification task "
                         "(a files world of task,text,label rows)")
    if base.kind != "encoder":
        raise SkillError(f"base {base.name} is a {base.kind} model: classification skills need "
                         "an encoder base")
    labels = world.labels(task)
    if len(labels) < 2:
        raise SkillError(f"task {task!r} has {len(labels)} label; a classifier needs at least 2")
    return labels


def train_classifier(name: str, base: Base, recipe: ClassifierRecipe,
                     checkpoint_root: Path | None = None, progress=None,
                     init: dict[str, torch.Tensor] | None = None) -> Skill:
    """Train a classification skill; checkpoints (and resume) as in ``train_lora``.

    ``init`` (optional): start the LoRA factors from another classifier's (same rank and
    modules; its head is not used — the new task has its own labels, so the head starts at
    zero), i.e. fine-tune from that skill (``transfer``); the recipe records its sha256."""
    from peft import LoraConfig, get_peft_model

    world = get_world(recipe.world, **recipe.world_args)
    labels = classification_world(world, recipe.task, base)
    pool = world.examples(recipe.task, 0, seed=recipe.seed, split="train")
    if not pool:
        raise SkillError(f"task {recipe.task!r} has no rows in the train split")
    label_indices(pool, labels)  # every label known before any training
    validation: list[Example] = []
    if recipe.val_every > 0 and len(pool) >= MIN_VALIDATION_POOL:
        pool, validation = split_validation(pool)
    model = base.load_model()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    if recipe.target_modules is None and not recipe.full:
        recipe = replace(recipe, target_modules=attention_targets(model))
    tokenizer = base.load_tokenizer()
    check_encodable(tokenizer, pool, f"train {name} on {recipe.task}", targets=False)
    torch.manual_seed(recipe.seed)
    cfg = classifier_config(recipe, labels)
    theta0: dict[str, torch.Tensor] = {}
    if recipe.full:   # every weight of the encoder blocks trains; embeddings stay the base's
        if init is not None:
            raise SkillError("a full fine-tune starts from the base; init is for LoRA")
        prefix = base.arch.block_prefix.rstrip(".") + "."
        for n, p in model.named_parameters():
            p.requires_grad_(n.startswith(prefix))
            if n.startswith(prefix):
                theta0[n] = p.detach().clone()
        peft_model = model
    else:
        peft_model = get_peft_model(model, LoraConfig(
            r=recipe.rank, lora_alpha=recipe.alpha, target_modules=cfg["target_modules"],
            lora_dropout=0.0, bias="none"))
    if recipe.head == "labels":   # nothing has trained yet: the encoder is the base's
        head = label_head(peft_model, tokenizer, labels, [ex.prompt for ex in pool[:256]],
                          recipe.max_length)
    else:
        head = nn.Linear(hidden_size(model), len(labels))
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    clf = EncoderClassifier(peft_model, head)
    params = {k: p for k, p in clf.named_parameters() if p.requires_grad}

    encoded = Encoded(tokenizer, [ex.prompt for ex in pool + validation], recipe.max_length)

    def make_batch(_tok, examples):
        batch = encoded.batch([ex.prompt for ex in examples])
        batch["labels"] = label_indices(examples, labels)
        return batch

    def validate() -> float:
        right = 0
        for i in range(0, len(validation), 64):
            part = validation[i:i + 64]
            logits = clf(**encoded.batch([ex.prompt for ex in part])).logits
            right += int((logits.argmax(-1) == label_indices(part, labels)).sum())
        return right / len(validation)

    run_recipe, key = recipe.as_dict(), recipe.key(base)
    if init is not None:
        from .lora import load_lora_init

        lora = {k.removeprefix("encoder."): p for k, p in params.items()
                if not k.startswith("head.")}
        with torch.no_grad():
            run_recipe["init"] = load_lora_init(
                lora, {k: v for k, v in init.items() if not k.startswith("head.")})
        key = f"{key}-{run_recipe['init'][:12]}"
    ckpt = checkpoint_root / key if checkpoint_root is not None else None
    log = train(clf, params, Sampler({recipe.task: pool}, recipe.batch_size, recipe.seed),
                tokenizer, recipe.loop(), checkpoint=ckpt,
                progress=progress, make_batch=make_batch,
                validate=validate if validation else None, val_every=recipe.val_every,
                patience=recipe.patience)
    if recipe.full:
        tensors = {n: (p.detach() - theta0[n]).contiguous() for n, p in model.named_parameters()
                   if n in theta0}
    else:
        tensors = lora_tensors(peft_model)
    tensors["head.weight"] = head.weight.detach().clone()
    tensors["head.bias"] = head.bias.detach().clone()
    if ckpt is not None:
        shutil.rmtree(ckpt, ignore_errors=True)
    return Skill(
        name=name, kind="delta" if recipe.full else "lora", base=base.fingerprint,
        tensors=tensors, config=cfg, recipe=run_recipe,
        metrics={"train": train_metrics(log)},
    )
