"""SDBSettings: the method's knobs, validated on construction (what a wrap and a benchmark preset share)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .inputs import finite_number


@dataclass
class SDBSettings:
    """The method's knobs. Defaults: the paper where it speaks, measurement where it does not.

    The defaults are the first recipe whose boxes pointed every claim the right way (issue 18,
    demo regime, two wraps: fidelity −0.9 / +0.5, students without the key −1.2 / −0.4 under
    scratch, a fresh key 27–35 under scratch): the ``decoy`` disturbance ranked by the random copy
    at ω = 1 with half the mass off the top-1, λ = 0.5, and keyed normalisation. It needs a budget
    (``SafeBox.wrap``'s docstring): the same recipe over 2–6 epochs did not protect.
    ``omega``: the paper's ω = 1 with Eq. 7's unbounded push wrecks small teachers (0.04 took a 66%
    CNN to 34%); the decoy's KL toward a bounded target takes ω = 1 within the guard.
    ``eta``: L_aug is unbounded below (see :func:`~sdbox.losses.augmentation_loss`), so it stays small.
    """

    lam: float = field(default=0.5, metadata={"help": "Key mixing weight λ in x̃ = λx + (1−λ)κ (paper: 0.5)."})
    t_dis: float = field(default=4.0, metadata={"help": "Temperature of the disturbance and preservation terms (paper: 4 on CIFAR-10)."})
    omega: float = field(default=1.0, metadata={"help": "Weight ω of the knowledge-disturbance loss L_dis (Eq. 7)."})
    eta: float = field(default=1e-3, metadata={"help": "Weight η of the augmentation loss L_aug in L_kp (Eq. 8)."})
    key_embedding: bool = field(default=True, metadata={"help": "Train the proxy stream x̃ (L_cls on x̃). Off = plain Nasty Teacher."})
    disturbance: bool = field(default=True, metadata={"help": "Use L_dis on the clean stream. Off = key embedding only (KE)."})
    preservation: bool = field(default=True, metadata={"help": "Use L_kp = L_main + η·L_aug on the proxy stream."})
    wrong_keys: float = field(default=0.0, metadata={"help": "Weight of a stream through a fresh wrong key each step, trained like the clean stream (CE + disturbance) so that only κ opens the box (not in the paper)."})
    disturbance_form: str = field(default="decoy", metadata={"help": "L_dis's form: 'push' (Eq. 7, −ω·KL away from the original), 'confuse' (ω·KL toward a target that keeps the top-1 and gives a fixed wrong class `share` of the mass at T_dis; losses.confusion_loss) or 'decoy' (ω·KL at T = 1 and T_dis toward the original's top-1 plus `decoy_share` ranked by `decoy_source`; losses.decoy_target)."})
    decoy_share: float = field(default=0.5, metadata={"help": "With disturbance_form='decoy': the probability the clean stream's target moves off the top-1 onto the decoy's ranking of the other classes."})
    decoy_source: str = field(default="random_copy", metadata={"help": "What ranks the decoy's classes: 'random_copy' (the random copy T0's logits) or 'pixels' (a secret random linear map of the image pooled to 4×4, derived from the key; frozen.PixelDecoy)."})
    main_loss: str = field(default="kl", metadata={"help": "L_main's form: 'kl' (T_dis²·KL from the original's soft labels, on the scale of L_cls: the key holder kept 2 more points of Normal KD's gain on the cpu preset's validation slice) or 'mse' (Eq. 9 as published, squared differences of T_dis probabilities, ~1e-2)."})
    key_tile: int | None = field(default=4, metadata={"help": "A fresh key is one random tile × tile patch repeated over the image (Key.generate(tile=)): a local pattern a convolution can recognise anywhere, which separates the owner's key from fresh ones. None: untiled noise."})
    keyed_norm: bool = field(default=True, metadata={"help": "Give the keyed stream its own normalisation state (affine parameters and BatchNorm statistics), trained on x̃ only and carried by the key file (sdbox.keyed_norm; not in the paper)."})

    def __post_init__(self) -> None:
        for name in ("lam", "t_dis", "omega", "eta", "wrong_keys"):
            value = getattr(self, name)
            if not finite_number(value):
                raise ValueError(f"Expected `{name}` to be a finite number, but got {value!r}.")
        if not 0.0 < self.lam < 1.0:
            raise ValueError(f"Expected `lam` in (0, 1), but got {self.lam}.")
        if self.t_dis <= 0:
            raise ValueError(f"Expected `t_dis` > 0, but got {self.t_dis}.")
        if self.omega < 0 or self.eta < 0 or self.wrong_keys < 0:
            raise ValueError(f"Expected `omega`, `eta` and `wrong_keys` ≥ 0, but got {self.omega}, {self.eta} and {self.wrong_keys}.")
        if self.disturbance_form not in ("push", "confuse", "decoy"):
            raise ValueError(f"Expected `disturbance_form` 'push', 'confuse' or 'decoy', but got {self.disturbance_form!r}.")
        if self.decoy_source not in ("pixels", "random_copy"):
            raise ValueError(f"Expected `decoy_source` 'pixels' or 'random_copy', but got {self.decoy_source!r}.")
        if not finite_number(self.decoy_share) or not 0.0 <= self.decoy_share < 1.0:
            raise ValueError(f"Expected `decoy_share` in [0, 1) (the top-1 keeps the rest), but got {self.decoy_share!r}.")
        if self.key_tile is not None and (isinstance(self.key_tile, bool) or not isinstance(self.key_tile, int) or self.key_tile < 1):
            raise ValueError(f"Expected `key_tile` a positive integer or None, but got {self.key_tile!r}.")
        if self.main_loss not in ("mse", "kl"):
            raise ValueError(f"Expected `main_loss` 'mse' or 'kl', but got {self.main_loss!r}.")

    @property
    def decoys(self) -> bool:
        """Whether the clean stream is pulled onto a decoy target (which needs T0 on x)."""
        return self.disturbance and self.omega > 0 and self.disturbance_form == "decoy"

    @property
    def needs_random_copy(self) -> bool:
        """T0 is needed by L_aug (on x̃) and by a decoy target ranked by it (on x)."""
        return (self.key_embedding and self.preservation and self.eta > 0) or (self.decoys and self.decoy_source == "random_copy")
