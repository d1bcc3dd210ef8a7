"""One trial's configuration, validated with pydantic so a typo or an out-of-range value
fails before any data is loaded, with the offending key in the message."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from .features import FrontendConfig
from .features.functionals import opensmile_missing
from .losses import loss_family, loss_names, loss_param_specs
from .models import UTTERANCE_MODELS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


_CORPUS_NAME = r"^[a-z0-9_-]+$"


class DataConfig(_Strict):
    """Which prepared data a trial uses and under which protocol (see ser_core.protocols):
    no corpora named = within-corpus folds over everything prepared; `train_corpora` /
    `eval_corpora` = cross-corpus; `leave_out` = leave-one-corpus-out."""

    prepared: Path = Field(description="directory written by `ser-search prepare`")
    fold: int = Field(0, ge=0, description="test fold; validation is fold+1 (mod n_folds). With test_folds: "
                                           "the validation fold")
    folds: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, min_length=2, description="cross-validated selection: train once per listed fold, select on the "
                                        "mean validation UA over them (k times the epochs); `fold` becomes the first. "
                                        "Alone: the listed folds are test folds (not nested: fold f+1 validates test "
                                        "fold f). With test_folds: the listed folds are the validation folds")
    test_folds: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, min_length=1, description="nested selection: these folds are held out of every run's training and "
                                        "validation and are the only test set; selection validates on `folds` "
                                        "(cross-validated) or `fold`")
    max_train_clips: int | None = Field(None, gt=0, description="subsample train (for quick runs)")
    train_corpora: list[Annotated[str, Field(pattern=_CORPUS_NAME)]] | None = Field(
        None, min_length=1, description="corpora to train (and validate) on; default: every prepared corpus")
    eval_corpora: list[Annotated[str, Field(pattern=_CORPUS_NAME)]] | None = Field(
        None, min_length=1, description="corpora to test on; default: the training corpora")
    leave_out: str | None = Field(None, pattern=_CORPUS_NAME,
                                  description="leave-one-corpus-out: test on this corpus, train on the others")

    def protocol_args(self) -> dict[str, Any]:
        """The keys that choose the protocol, as ser_core.protocols' evaluation_split takes them
        (test_folds only when set, so callers that never hold out folds see the old keys)."""
        args: dict[str, Any] = {"train_corpora": self.train_corpora, "eval_corpora": self.eval_corpora,
                                "leave_out": self.leave_out}
        if self.test_folds is not None:
            args["test_folds"] = list(self.test_folds)
        return args

    def corpus_args(self) -> dict[str, Any]:
        """The keys that choose the training and evaluation corpora (ser_core.protocols.resolve_corpora)."""
        return {"train_corpora": self.train_corpora, "eval_corpora": self.eval_corpora, "leave_out": self.leave_out}

    @model_validator(mode="after")
    def _one_protocol(self) -> "DataConfig":
        if self.leave_out is not None and (self.train_corpora is not None or self.eval_corpora is not None):
            raise ValueError("data.leave_out cannot be combined with data.train_corpora or data.eval_corpora "
                             "(it sets both)")
        for key in ("train_corpora", "eval_corpora"):
            names = getattr(self, key)
            if names is not None and len(set(names)) != len(names):
                raise ValueError(f"data.{key} lists a corpus twice: {names}")
        if self.folds is not None:
            self._check_folds()
        if self.test_folds is not None:
            self._check_test_folds()
        return self

    def _check_test_folds(self) -> None:
        """A held-out fold is only ever tested: listing it for selection too (as `folds` or
        as the validation `fold`) would report test figures of speakers selection read."""
        held = list(self.test_folds)
        if len(set(held)) != len(held):
            raise ValueError(f"data.test_folds lists a fold twice: {held}")
        if self.leave_out is not None or self.train_corpora is not None or self.eval_corpora is not None:
            raise ValueError("data.test_folds needs the within-corpus protocol: with data.train_corpora, "
                             "data.eval_corpora or data.leave_out the test set is whole corpora")
        both = sorted(set(self.folds or [self.fold]) & set(held))
        if both:
            key = "data.folds" if self.folds is not None else "data.fold"
            raise ValueError(f"{key} and data.test_folds share fold(s) {both}: a held-out test fold cannot also "
                             f"be a selection (validation) fold; list the selection folds in data.folds "
                             f"(at least 2 for cross-validated selection), none of {held}")

    def _check_folds(self) -> None:
        """`folds` replaces `fold`: a cross-validated trial's folds are those listed, and `fold` is
        set to the first (so a dumped config validates again). An explicit `fold` elsewhere is a
        contradiction, not a choice to make silently. Only the within-corpus protocol rotates its
        test set with the fold; cross-corpus and leave-one-corpus-out test on whole corpora, so
        their "folds" would score one test set k times and the interval would mean nothing."""
        folds = list(self.folds)
        if len(set(folds)) != len(folds):
            raise ValueError(f"data.folds lists a fold twice: {folds}")
        if "fold" in self.model_fields_set and self.fold != folds[0]:
            raise ValueError(f"data.fold = {self.fold} conflicts with data.folds = {folds}: a cross-validated "
                             f"trial trains on every listed fold; remove data.fold")
        if self.leave_out is not None or self.train_corpora is not None or self.eval_corpora is not None:
            raise ValueError("data.folds needs the within-corpus protocol: with data.train_corpora, "
                             "data.eval_corpora or data.leave_out the test set does not rotate with the fold")
        self.fold = folds[0]


class ModelConfig(_Strict):
    # linear / mlp: the baselines' classifiers on one vector per clip (ser_core.models), the models
    # a functionals frontend (egemaps, compare) takes; mlp's hidden width is embed_dim
    name: Literal["cnn_transformer", "cnn_birnn", "linear", "mlp"] = "cnn_transformer"
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    # CNN-Transformer (paper defaults)
    channels: list[int] | None = Field(None, description="conv channels; default per model")
    d_model: int = Field(64, gt=0)
    n_heads: int = Field(4, gt=0)
    n_layers: int = Field(4, gt=0)
    ff_dim: int = Field(512, gt=0)
    # CNN-BiRNN (embed_dim: also the MLP's hidden width)
    rnn: Literal["lstm", "gru"] = "lstm"
    rnn_hidden: int = Field(128, gt=0)
    rnn_layers: int = Field(1, gt=0)
    embed_dim: int = Field(128, gt=0)
    # A spectrogram model's pooled embedding joined with the clip's openSMILE functionals
    # (ser_core.models.FusedClassifier): "off", or the functional set, "egemaps" or "compare".
    fuse_functionals: Literal["off", "egemaps", "compare"] = "off"
    fuse_hidden: int = Field(128, gt=0, description="width of the functionals' branch (fuse_functionals)")

    @field_validator("fuse_functionals")
    @classmethod
    def _opensmile_installed(cls, v: str) -> str:
        # as for a functionals frontend: fail before Ray starts, naming the extra to install
        problem = opensmile_missing(v) if v != "off" else None
        if problem:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _heads_divide(self) -> "ModelConfig":
        if self.name == "cnn_transformer" and self.d_model % self.n_heads:
            raise ValueError(f"model.d_model ({self.d_model}) must be divisible by model.n_heads ({self.n_heads})")
        if self.channels is not None and (not self.channels or min(self.channels) <= 0):
            raise ValueError("model.channels must be a non-empty list of positive integers")
        return self


class _LossConfigFields(_Strict):
    """LossConfig without its parameter fields, which `LossConfig` below adds from the
    families' declarations (ser_core.losses.loss_param_specs)."""

    family: str = "cross_entropy"

    @field_validator("family")
    @classmethod
    def _known_family(cls, v: str) -> str:
        if v not in loss_names():
            raise ValueError(f"unknown loss family {v!r}; choose one of {', '.join(loss_names())}")
        return v

    @model_validator(mode="after")
    def _params_fit_family(self) -> "_LossConfigFields":
        declared = loss_family(self.family).params
        for key, value in self.params().items():
            if key not in declared:
                raise ValueError(
                    f"loss.{key} is not a parameter of loss family {self.family!r} "
                    f"(its parameters: {', '.join(declared) or 'none'})"
                )
            declared[key].check_range(self.family, key, value)  # the family's documented range
        return self

    def params(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump(exclude={"family"}).items() if v is not None}


# One optional float per loss parameter, in loss_param_specs' order (the results' column order),
# so a parameter declared on a family is a config key without being named here. A module-level
# class named LossConfig, so pickles (Ray Tune's) find it as ser_core.config.LossConfig.
LossConfig = create_model(
    "LossConfig", __base__=_LossConfigFields, __module__=__name__, __qualname__="LossConfig",
    __doc__="""`family` names a ser_core.losses registry entry; the other keys are that family's
    parameters. Setting a parameter the family does not use is an error, not a silent no-op.""",
    **{spec.name: (float | None, Field(None, description=f"{spec.label} ({', '.join(spec.families)}); default "
                                                         f"{spec.default}, range [{spec.low}, {spec.high}]"))
       for spec in loss_param_specs()},
)


class OptimConfig(_Strict):
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    batch_size: int = Field(32, gt=0, le=4096)
    epochs: int = Field(20, gt=0)
    grad_clip: float | None = Field(5.0, gt=0.0)
    # The training recipe (ser_core.schedules, ser_core.losses); every default is today's
    # behaviour: constant lr, hard labels, unweighted classes, no weight averaging.
    schedule: Literal["constant", "cosine", "onecycle", "step"] = Field(
        "constant", description="learning-rate schedule, stepped after every optimizer step (ser_core.schedules)")
    warmup_epochs: float = Field(0.0, ge=0.0, description="linear warm-up length in epochs (onecycle: its "
                                                          "rising phase; 0 = 30 % of the run)")
    step_epochs: int = Field(10, gt=0, description="step schedule: epochs between decays")
    step_gamma: float = Field(0.1, gt=0.0, le=1.0, description="step schedule: lr factor per decay")
    label_smoothing: float = Field(0.0, ge=0.0, le=0.5, description="ε spread over the protocol's classes")
    class_weights: Literal["none", "balanced"] = Field(
        "none", description="balanced: loss weights n / (k · n_c) from the training split's counts")
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0, description="per-step decay of the weights' moving average "
                                                            "that validation and test use; 0 = off")

    @model_validator(mode="after")
    def _warmup_fits(self) -> "OptimConfig":
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"optim.warmup_epochs ({self.warmup_epochs}) must be shorter than "
                             f"optim.epochs ({self.epochs})")
        return self


class AugmentConfig(_Strict):
    """Training-batch augmentation (ser_core.augment); all off by default. Mask widths are in
    frequency bins and frames (Park et al.'s F and T); a count of 0 turns its masks off."""

    freq_masks: int = Field(0, ge=0, le=10, description="SpecAugment frequency masks per clip")
    freq_mask_width: int = Field(8, ge=0, description="largest frequency-mask width, in bins")
    time_masks: int = Field(0, ge=0, le=10, description="SpecAugment time masks per clip")
    time_mask_width: int = Field(20, ge=0, description="largest time-mask width, in frames")
    time_shift: float = Field(0.0, ge=0.0, le=0.5, description="largest circular shift, as a fraction "
                                                               "of the clip's valid frames")
    time_crop: float = Field(0.0, ge=0.0, le=0.5, description="largest share of the valid frames a "
                                                              "random crop removes")
    mixup_alpha: float = Field(0.0, ge=0.0, le=4.0, description="mixup's Beta(α, α); 0 = off")


class TrainConfig(_Strict):
    data: DataConfig
    frontend: FrontendConfig = Field(default_factory=FrontendConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    seed: int = 0
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    amp: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU)")
    variable_length: bool = Field(True, description="mask padding frames (true clip lengths)")
    feature_cache: Literal["auto", "on", "off"] = Field(
        "auto", description="auto/on: raw spectrograms from the node's shared cache (ser_core.feature_cache), "
                            "copied to a GPU when they fit (on: always); off: computed per batch from the waveforms")
    feature_cache_dir: Path | None = Field(
        None, description="directory of the shared spectrogram cache (default: $SER_SEARCH_FEATURE_CACHE, else "
                          "<prepared>/feature-cache when writable, else a node-local temporary directory)")
    normalization: Literal["global", "speaker"] = Field(
        "global", description="global: per-frequency statistics of the training split; speaker: each speaker's "
                              "own clips' statistics for that speaker's rows (transductive per speaker, label-free)")
    fastpath: bool = Field(True, description="train with ser_core.fastpath's faster equivalents of the "
                                             "stock modules (same maths; false = stock PyTorch)")
    output: Path | None = Field(None, description="where `ser-search train` writes checkpoint + metrics")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("auto", "cpu", "cuda") and not v.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {v!r}")
        return v

    @model_validator(mode="after")
    def _model_reads_frontend(self) -> "TrainConfig":
        # An utterance frontend gives one frame per clip: the CNNs' pooling has no time axis to pool.
        if self.frontend.utterance and self.model.name not in UTTERANCE_MODELS:
            raise ValueError(f"frontend {self.frontend.kind!r} gives one vector per clip; "
                             f"model.name must be one of {', '.join(UTTERANCE_MODELS)}, not {self.model.name!r}")
        if self.model.fuse_functionals != "off" and (self.model.name in UTTERANCE_MODELS or self.frontend.utterance):
            raise ValueError(f"model.fuse_functionals joins functionals to a spectrogram model's embedding; "
                             f"{self.model.name!r} on frontend {self.frontend.kind!r} reads one vector per clip "
                             "already (use frontend = \"egemaps\" / \"compare\" for the functionals alone)")
        return self


class ConfigError(ValueError):
    """A config file is unreadable or invalid; the message names file and key."""


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None


def load_train_config(path: Path) -> TrainConfig:
    """Relative paths inside the file are resolved against the file's own directory."""
    path = Path(path)
    raw = load_toml(path)
    frontend = raw.get("frontend")
    if isinstance(frontend, dict) and isinstance(frontend.get("ssl_model"), str):  # a local encoder beside the file
        from .features.ssl import resolve_encoder  # noqa: PLC0415

        frontend["ssl_model"] = resolve_encoder(frontend["ssl_model"], path.parent)
    try:
        cfg = TrainConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, str(path))) from None
    base = path.parent
    if not cfg.data.prepared.is_absolute():
        cfg.data.prepared = (base / cfg.data.prepared).resolve()
    if cfg.output is not None and not cfg.output.is_absolute():
        cfg.output = (base / cfg.output).resolve()
    return cfg
