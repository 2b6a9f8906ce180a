"""Inference backends behind one small interface: compile an ONNX file, time it, report statistics.

Each backend records what decides its speed (version, device name, precision, threads) in `info`, so a latency
table says what it was measured on. Precision is always explicit: OpenVINO's CPU default on AMX machines is bf16,
which is faster and numerically different from f32.
"""

import os
import platform
import statistics
import time

import numpy as np

from .errors import NASError

BACKENDS = ("openvino", "onnxruntime", "tensorrt")
PRECISIONS = {"openvino": ("f32", "f16", "bf16"), "onnxruntime": ("f32",), "tensorrt": ("f32", "f16")}
DEFAULT_DEVICE = {"openvino": "CPU", "onnxruntime": "CPU", "tensorrt": "cuda:0"}


def cpu_name():
    """The CPU model from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _require(module, hint):
    """Import a backend's package, or fail with one sentence saying what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise NASError(hint) from e


def timing_stats(samples_s, warmup):
    """Summary of per-call times in microseconds."""
    us = sorted(s * 1e6 for s in samples_s)
    q1, _, q3 = statistics.quantiles(us, n=4) if len(us) > 1 else (us[0], us[0], us[0])
    return {
        "warmup": warmup,
        "repeats": len(us),
        "median_us": statistics.median(us),
        "mean_us": statistics.fmean(us),
        "std_us": statistics.pstdev(us),
        "iqr_us": q3 - q1,
        "min_us": us[0],
    }


class Compiled:
    """A compiled model: `run()` executes one inference on fixed inputs; `timed()` returns one call's seconds."""

    def __init__(self, run, keepalive=(), timed=None):
        self.run, self._keepalive, self._timed = run, keepalive, timed

    def timed(self):
        if self._timed is not None:  # asynchronous devices time themselves (CUDA events)
            return self._timed()
        t = time.perf_counter()
        self.run()
        return time.perf_counter() - t

    def time(self, warmup=10, repeats=50):
        """Per-call times (seconds) after `warmup` untimed calls."""
        for _ in range(warmup):
            self.run()
        return [self.timed() for _ in range(repeats)]


class Backend:
    """Base: `compile(onnx_path, inputs)` -> Compiled; `measure(onnx_path, inputs)` -> stats dict."""

    name = ""

    def __init__(self, device=None, precision="f32", threads=None):
        if precision not in PRECISIONS[self.name]:
            raise NASError(
                f"backend {self.name} does not support precision {precision!r}; "
                f"choose from {list(PRECISIONS[self.name])}."
            )
        if threads is not None and threads < 1:
            raise NASError(f"threads must be >= 1 (or omitted for the backend's default), got {threads}.")
        self.device, self.precision, self.threads = device or DEFAULT_DEVICE[self.name], precision, threads
        self.info = {"backend": self.name, "device": self.device, "precision": precision}

    def measure(self, onnx_path, inputs, warmup=10, repeats=50):
        compiled = self.compile(onnx_path, inputs)
        return timing_stats(compiled.time(warmup, repeats), warmup)


class OpenVINOBackend(Backend):
    """OpenVINO runtime; any device name it knows (CPU, GPU, NPU); LATENCY hint unless threads are fixed."""

    name = "openvino"

    def __init__(self, device=None, precision="f32", threads=None):
        super().__init__(device, precision, threads)
        ov = _require("openvino", "backend openvino needs the openvino package: pip install openvino.")
        self.core = ov.Core()
        available = self.core.available_devices
        if self.device.split(".")[0] not in {d.split(".")[0] for d in available}:
            raise NASError(f"OpenVINO device {self.device!r} is not available here; available devices: {available}.")
        self.config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.info.update(
            version=ov.get_version(),
            device_name=self.core.get_property(self.device, "FULL_DEVICE_NAME"),
            cpu=cpu_name(),
        )

    def compile(self, onnx_path, inputs):
        compiled = self.core.compile_model(str(onnx_path), self.device, self.config)
        self.info["threads"] = int(compiled.get_property("INFERENCE_NUM_THREADS")) if self.device == "CPU" else None
        request = compiled.create_infer_request()
        for i, x in enumerate(inputs):
            request.set_input_tensor(i, self._tensor(x))
        return Compiled(lambda: request.infer(share_outputs=True), (compiled, request))

    @staticmethod
    def _tensor(x):
        import openvino as ov

        return ov.Tensor(np.ascontiguousarray(x))


class ONNXRuntimeBackend(Backend):
    """ONNX Runtime, CPU execution provider, outputs bound once (no per-call copies)."""

    name = "onnxruntime"

    def __init__(self, device=None, precision="f32", threads=None):
        super().__init__(device, precision, threads)
        if self.device.upper() != "CPU":
            raise NASError(f"backend onnxruntime runs on device 'CPU' only here, got {self.device!r}.")
        self.ort = ort = _require(
            "onnxruntime", "backend onnxruntime needs the onnxruntime package: pip install onnxruntime."
        )
        self.info.update(
            version=ort.__version__, device_name=cpu_name(), cpu=cpu_name(), threads=threads or os.cpu_count()
        )

    def compile(self, onnx_path, inputs):
        opts = self.ort.SessionOptions()
        opts.intra_op_num_threads = self.threads or 0
        session = self.ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        binding = session.io_binding()
        for meta, x in zip(session.get_inputs(), inputs):
            binding.bind_cpu_input(meta.name, np.ascontiguousarray(x))
        for meta in session.get_outputs():
            binding.bind_output(meta.name, "cpu")
        return Compiled(lambda: session.run_with_iobinding(binding), (session, binding))


class TensorRTBackend(Backend):
    """TensorRT engine built from ONNX with the Python API (the wheels ship no trtexec); timed with CUDA events."""

    name = "tensorrt"

    def __init__(self, device=None, precision="f32", threads=None):
        super().__init__(device, precision, threads)
        trt = _require(
            "tensorrt",
            "backend tensorrt needs the tensorrt package and an NVIDIA GPU: pip install 'nas_plugin[tensorrt]'.",
        )
        import torch

        if not torch.cuda.is_available():
            raise NASError(f"backend tensorrt needs a CUDA GPU, but torch sees none (device {self.device!r}).")
        self.trt, self.torch = trt, torch
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.info.update(
            version=trt.__version__, device_name=torch.cuda.get_device_name(self.device), cpu=cpu_name(), threads=None
        )

    def compile(self, onnx_path, inputs):
        trt, torch = self.trt, self.torch
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise NASError(f"TensorRT cannot parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        if self.precision == "f16":
            config.set_flag(trt.BuilderFlag.FP16)
        engine = trt.Runtime(self.logger).deserialize_cuda_engine(builder.build_serialized_network(network, config))
        context = engine.create_execution_context()
        device, feed = torch.device(self.device), iter(inputs)
        buffers = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                t = torch.from_numpy(np.ascontiguousarray(next(feed))).to(device)
            else:
                dtype = torch.float16 if engine.get_tensor_dtype(name) == trt.float16 else torch.float32
                t = torch.empty(tuple(engine.get_tensor_shape(name)), dtype=dtype, device=device)
            context.set_tensor_address(name, t.data_ptr())
            buffers.append(t)
        stream = torch.cuda.Stream(device)

        def run():
            context.execute_async_v3(stream.cuda_stream)
            stream.synchronize()

        def timed():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(stream)
            context.execute_async_v3(stream.cuda_stream)
            end.record(stream)
            end.synchronize()
            return start.elapsed_time(end) / 1000  # ms -> s

        return Compiled(run, (engine, context, buffers, stream), timed)


def get_backend(name, device=None, precision="f32", threads=None):
    """A backend by name; errors name the allowed backends and precisions."""
    classes = {"openvino": OpenVINOBackend, "onnxruntime": ONNXRuntimeBackend, "tensorrt": TensorRTBackend}
    if name not in classes:
        raise NASError(f"unknown backend {name!r}; choose from {list(BACKENDS)}.")
    return classes[name](device, precision, threads)
