"""Model profiles for the training-step model: gradient size and density per step, as OmniReduce reports them.

Source: J. Fei, C.-Y. Ho, A. N. Sahu, M. Canini, A. Sapio, "Efficient Sparse Collective Communication and its
application to Accelerate Distributed Deep Learning", SIGCOMM'21 (doi 10.1145/3452296.3472904): Table 1 (the
models of the evaluation) and the gradient density figure of its section 2; end-to-end results in Figure 10.

Every figure below is marked with how sure it is:
- "exact": a well-known property of the model itself (parameter counts of BERT-large, VGG19, ResNet152 as
  torchvision and the BERT paper give them, times 4 bytes), which the OmniReduce table restates;
- "approximate": recalled from the paper's table and figure. The paper's text was not at hand when this was
  written (no copy of it could be opened from this machine), so these numbers could not be checked, and the
  model's per-profile results inherit that uncertainty. Override them with --profile NAME=MB:DENSITY.

compute_ms is NOT from the paper: it is an assumed forward+backward time per step on one GPU, chosen only to
put communication in proportion; override it with --compute-ms NAME=MS. With compute 0 the training speedup
equals the communication speedup, which is the upper bound whatever the compute time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelProfile:
    name: str
    gradient_mb: float  # float32 gradient per step, MB (10^6 bytes)
    density: float  # fraction of non-zero gradient blocks per worker per step
    compute_ms: float  # assumed forward+backward per step (not from the paper)
    certainty: str  # "exact" / "approximate: ..." for gradient_mb and density

    @property
    def elements(self) -> int:
        return int(self.gradient_mb * 1e6 / 4)


PROFILES: tuple[ModelProfile, ...] = (
    ModelProfile("DeepLight", 2300.0, 0.01, 60.0,
                 "approximate (recalled from Table 1 / the density figure: an embedding-dominated CTR model, "
                 "about 1% of blocks non-zero)"),
    ModelProfile("LSTM", 1600.0, 0.02, 120.0,
                 "approximate (recalled: GBW language model with a large embedding, a few % non-zero)"),
    ModelProfile("NCF", 700.0, 0.05, 20.0,
                 "approximate (recalled: MovieLens recommender, embedding tables, a few % non-zero)"),
    ModelProfile("BERT", 1340.0, 0.10, 250.0,
                 "size exact (BERT-large, 335M parameters); density approximate (recalled: ~10%)"),
    ModelProfile("VGG19", 575.0, 1.0, 150.0, "exact (143.7M parameters; dense gradients)"),
    ModelProfile("ResNet152", 241.0, 1.0, 180.0, "exact (60.2M parameters; dense gradients)"),
)


def by_name() -> dict[str, ModelProfile]:
    return {profile.name: profile for profile in PROFILES}
