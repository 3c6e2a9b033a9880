"""Native Keras: `model.predict` (what tutorials write) and a `tf.function` call (what serves).

At batch 1 they differ by about 100x: predict builds a dataset and a loop per call.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from exporters.keras import configure_tensorflow
from toolkit.data import only_input
from toolkit.errors import BadInputError, ProviderUnavailableError
from toolkit.runners.base import RunnerConfig

TF_GPU_REASON = (
    "TensorFlow on GPU is not measured: TF 2.21 needs CUDA 12 libraries while torch and "
    "onnxruntime-gpu use CUDA 13, so it needs an environment of its own"
)


class KerasRunner:
    runtime = "native"
    idiomatic = "predict"
    providers = ("cpu", "cuda")
    variants = ("predict", "tf.function")
    fixed_batch = None

    def __init__(self, model: Any, config: RunnerConfig) -> None:
        import tensorflow as tf

        self.model = model
        self.provider = config.provider
        self.device = config.device
        self.settings = {"threads": tf.config.threading.get_intra_op_parallelism_threads(),
                         "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
                         "spinning": "no switch in TensorFlow (its pools spin, then sleep)"}
        shape = [None, *model.inputs[0].shape[1:]]
        xla = config.recipe == "xla"
        if xla:  # XLA compiles the call on its first use (the measure step's `compile` phase)
            self.variants = ("tf.function",)
            self.settings["compiler"] = f"XLA (jit_compile=True), TensorFlow {tf.__version__}"
        self._function = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec(shape, tf.float32)], jit_compile=xla or None,
        )

    @classmethod
    def import_framework(cls) -> None:
        configure_tensorflow()
        import keras  # noqa: F401
        import tensorflow  # noqa: F401

    @classmethod
    def load_model(cls, path: Path) -> Any:
        configure_tensorflow()
        import keras

        try:
            return keras.models.load_model(path)
        except (ValueError, OSError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise BadInputError(f"{path}: not a Keras model file ({type(exc).__name__}: "
                                f"{first}); save it with model.save('model.keras')") from None

    @classmethod
    def load(cls, path: Path, config: RunnerConfig) -> KerasRunner:
        if config.provider not in cls.providers:
            raise ProviderUnavailableError(f"Keras runs on cpu or cuda, not {config.provider!r}")
        configure_tensorflow()
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(config.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        if config.provider == "cuda" and not tf.config.list_physical_devices("GPU"):
            raise ProviderUnavailableError(f"{TF_GPU_REASON} (TensorFlow sees no GPU)")
        if config.provider == "cpu":
            tf.config.set_visible_devices([], "GPU")
        return cls(cls.load_model(path), config)

    def prepare(self, variant: str, batch: dict[str, np.ndarray]) -> Callable[[], Any]:
        x = only_input(batch)
        if variant == "predict":
            # The whole batch in one call: predict's default batch_size of 32 would make
            # "batch 512" sixteen calls of 32 rows.
            rows = len(x)
            return lambda: self.model.predict(x, batch_size=rows, verbose=0)
        import tensorflow as tf

        tensor = tf.constant(x)  # the host-to-tensor copy stays outside the timed call
        function = self._function
        return lambda: function(tensor).numpy()

    def close(self) -> None:
        self.model = None
