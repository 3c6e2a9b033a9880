"""Deployment recipes beyond fp32, and the accuracy criterion that judges them.

    fp32           the model as exported (every run has it)
    int8-dynamic   onnxruntime.quantization.quantize_dynamic of the ONNX file
    int8-static    quantize_static, QDQ, per channel, calibrated on rows of the training data
    fp16           float16 weights and arithmetic, float32 inputs and outputs
                   (onnxconverter-common); measured on CUDA (ONNX Runtime's CPU provider runs
                   float16 through casts)
    ort-offline    the graph optimised once and saved: changes cold start, not steady state
    torch-compile  torch.compile (inductor) of the native module; compile time is its own phase
    xla            tf.function(jit_compile=True) of the Keras model; compile time likewise

The ONNX recipes make a file in a child (`toolkit.steps.derive`) and are measured by ONNX
Runtime; the native ones are applied by their framework's runner when it loads the model.
Recipes that change the arithmetic (int8, fp16) are judged by the accuracy criterion
(`QualityRule`) and label agreement; the others by the fp32 parity tolerances.
"""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.errors import BadInputError

FP32 = "fp32"
ONNX_RECIPES = ("int8-dynamic", "int8-static", "fp16", "ort-offline")
NATIVE_RECIPES = {"torch-compile": "torch", "xla": "keras"}  # recipe -> its framework
RECIPES = (FP32, *ONNX_RECIPES, *NATIVE_RECIPES)
BY_QUALITY = ("int8-dynamic", "int8-static", "fp16")  # judged by the accuracy criterion
# Files made for the hardware they were made on (ORT's offline optimisation may use the CPU's
# instruction set): on a cluster, each measuring node makes its own.
HARDWARE_SPECIFIC = ("ort-offline",)
CUDA_ONLY = {"fp16": "fp16 is measured on CUDA: ONNX Runtime's CPU provider runs most float16 "
             "operators through casts to float32, so its timing would say nothing about fp16 "
             "serving"}
CPU_ONLY = {"ort-offline": "the offline-optimised file was optimised for the CPU provider, and "
            "ONNX Runtime runs such a file only with the providers it was optimised for"}


def parse_recipes(values: list[str] | tuple[str, ...], flag: str = "--recipes") -> tuple[str, ...]:
    """Known recipe names, fp32 first and always there (the baseline of every comparison)."""
    unknown = [v for v in values if v not in RECIPES]
    if unknown:
        raise BadInputError(f"{flag}: unknown recipe(s) {', '.join(unknown)}; valid: "
                            f"{', '.join(RECIPES)}")
    return (FP32, *dict.fromkeys(v for v in values if v != FP32))


@dataclass(frozen=True)
class QualityRule:
    """How much test quality (accuracy, or r2) a recipe may lose against the native model:
    `absolute` points (0.01) or a `relative` share of the native quality (1%)."""

    value: float
    relative: bool

    @classmethod
    def parse(cls, text: str) -> QualityRule:
        raw = text.strip()
        try:
            rule = (cls(float(raw[:-1]) / 100, True) if raw.endswith("%")
                    else cls(float(raw), False))
        except ValueError:
            rule = cls(-1.0, False)
        if not 0 <= rule.value < 1:
            raise BadInputError(f"--max-quality-drop {text!r}: give an absolute drop such as "
                                "0.01, or a relative one such as 1%")
        return rule

    def allowed(self, native_quality: float) -> float:
        return self.value * abs(native_quality) if self.relative else self.value

    def describe(self) -> str:
        return f"{self.value:.2%} relative" if self.relative else f"{self.value:g} absolute"

    def to_text(self) -> str:
        return f"{self.value * 100:g}%" if self.relative else f"{self.value:g}"


DEFAULT_RULE = "1%"
