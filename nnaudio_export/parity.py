"""Numerical parity of a bundle's artifacts against eager PyTorch and a float64 reference.

Running a backend runs the bundle's code (a ``.pt2`` is a shared library, TorchScript a
program). :func:`verify` therefore runs, unless told otherwise, only what is safe on a
bundle of unknown origin: ONNX Runtime (a graph of built-in operators) and the eager module
rebuilt from the manifest's spec (data). TorchScript and ``.pt2`` run when asked for by name
(``backends=``, CLI ``--backend``) or when the bundle is pinned by its manifest digest
(``expected_sha256``, CLI ``--expect-sha256``)."""
import copy
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from .builder import Frontend, ModuleFrontend
from .bundle import golden_input
from .manifest import (bundle_backends, check_files, model_format, read_golden, read_manifest,
                       rebuildable)
from .runtime import BACKENDS
from .devices import cuda_available
from .runtime import load
from .tolerances import (EXTENDED_LOG_DB_WINDOW, LINEAR_REL_TOL, LOG_ABS_TOL,  # noqa: F401
                         LOG_DB_REPORT_WINDOW, LOG_DB_WINDOW, LOG_MIN_DB_TOL,
                         NORMALIZED_LOG_ABS_TOL, SPREAD_FACTOR, amplifies_rounding, compare, item_rel,
                         log_threshold, measured_spread, normalisation_bound_scale,
                         spread_limits, window_for)

# Backends whose artifacts hold no native code or program: run on any bundle by default.
DATA_ONLY_BACKENDS = ("onnxruntime",)
DEVICES = ("cpu", "cuda")


@dataclass
class ParityRow:
    backend: str
    device: str
    reference: str            # 'eager_float32' (same device) or 'float64_cpu'
    max_abs: Optional[float] = None
    max_rel: Optional[float] = None   # max abs / output peak
    threshold: Optional[float] = None
    metric: str = ""          # 'max_rel' (linear) or 'max_abs' (log)
    ok: Optional[bool] = None
    status: str = "passed"    # passed | failed | skipped | error
    note: str = ""
    max_abs_80db: Optional[float] = None  # log outputs: max abs within 80 dB (informational)
    max_scaled: Optional[float] = None    # scaled bound: max of |error| / per-value scale (judged)
    bound_scale: Optional[float] = None   # scaled bound: the largest per-value scale


@dataclass
class ParityReport:
    bundle: str
    output_kind: str
    signals: List[str]
    rows: List[ParityRow] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    log_db_window: float = LOG_DB_WINDOW
    not_checked: List[str] = field(default_factory=list)   # asked for, but could not run
    allow_skip: bool = False
    conditioning: List[str] = field(default_factory=list)   # why a bound was scaled, per value

    @property
    def ok(self) -> bool:
        """Every row that ran passed, and (unless ``allow_skip``) nothing that was asked for
        went unchecked (e.g. ``devices=('cuda',)`` on a machine without CUDA)."""
        ran = [r for r in self.rows if r.status != "skipped"]
        complete = self.allow_skip or not self.not_checked
        return bool(ran) and complete and all(r.status == "passed" for r in ran)

    def to_dict(self) -> Dict[str, Any]:
        return {"bundle": self.bundle, "ok": self.ok, "output_kind": self.output_kind,
                "signals": self.signals, "thresholds": {"linear_max_rel": LINEAR_REL_TOL,
                "log_max_abs": LOG_ABS_TOL, "log_min_db": LOG_MIN_DB_TOL,
                "normalized_log_max_abs": NORMALIZED_LOG_ABS_TOL,
                "log_db_window": self.log_db_window},
                "rows": [asdict(r) for r in self.rows], "skipped": self.skipped,
                "not_checked": self.not_checked, "allow_skip": self.allow_skip,
                "conditioning": self.conditioning}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ParityReport":
        """The report :meth:`to_dict` wrote (e.g. a manifest's ``parity``)."""
        return cls(d["bundle"], d["output_kind"], list(d["signals"]),
                   [ParityRow(**r) for r in d["rows"]], list(d.get("skipped", [])),
                   d.get("thresholds", {}).get("log_db_window", LOG_DB_WINDOW),
                   list(d.get("not_checked", [])), bool(d.get("allow_skip", False)),
                   list(d.get("conditioning", [])))

    def table(self) -> str:
        wide = any(r.max_abs_80db is not None for r in self.rows)
        head = "| backend | device | reference | max abs | max rel (peak) |"
        head += " max abs (80 dB) |" if wide else ""
        head += " threshold | status |"
        lines = [head, "|---" * (head.count("|") - 1) + "|"]
        fmt = lambda v: "-" if v is None else f"{v:.2e}"
        for r in self.rows:
            thr = "-" if r.threshold is None else f"{r.metric} <= {r.threshold:.0e}"
            if r.bound_scale is not None:
                thr = f"{r.metric} / scale = {r.max_scaled:.2e} <= {r.threshold:.0e} (scale <= {r.bound_scale:.3g})"
            status = r.status.upper() if r.status != "passed" else "ok"
            if r.note:
                status += f" ({r.note})"
            line = f"| {r.backend} | {r.device} | {r.reference} | {fmt(r.max_abs)} | {fmt(r.max_rel)} |"
            line += f" {fmt(r.max_abs_80db)} |" if wide else ""
            lines.append(line + f" {thr} | {status} |")
        if wide:
            lines.append(f"(log output: judged within {self.log_db_window:g} dB of each item's peak"
                         + ("; the 80 dB column is informational)" if self.log_db_window < 80 else ")"))
        for s in self.skipped:
            lines.append(f"SKIPPED: {s}")
        for s in self.conditioning:
            lines.append(f"SCALED BOUND: {s}")
        for s in self.not_checked:
            lines.append(f"NOT CHECKED{' (allowed)' if self.allow_skip else ''}: {s}")
        lines.append("PARITY OK" if self.ok else "PARITY FAILED")
        return "\n".join(lines)


def disable_tf32() -> None:
    """fp32 parity on CUDA needs TF32 off in torch, cuDNN and (via env) cuBLAS/cuDNN frontends."""
    os.environ["NVIDIA_TF32_OVERRIDE"] = "0"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def _choose_backends(manifest: Dict[str, Any], backends: Optional[Sequence[str]], pinned: bool,
                     report: ParityReport) -> List[str]:
    """The backends to run: those asked for (each must be in the bundle), else every one the
    bundle has when it is pinned, else only the data-only ones (the others are listed)."""
    have = bundle_backends(manifest)
    if backends is not None:
        if isinstance(backends, str):
            backends = [backends]
        bad = [b for b in backends if b not in BACKENDS or (b != "eager" and b not in have)]
        if bad:
            raise ValueError(f"backends: {bad} not in this bundle; it has {have} (and 'eager')")
        return [b for b in dict.fromkeys(backends) if b != "eager"]
    if pinned:
        return have
    held_back = [b for b in have if b not in DATA_ONLY_BACKENDS]
    if held_back:
        report.skipped.append(f"{', '.join(held_back)}: not run; a bundle is code and this one is not "
                              "pinned (pass expected_sha256 / --expect-sha256, or name the backend)")
    return [b for b in have if b in DATA_ONLY_BACKENDS]


def _choose_devices(devices: Optional[Sequence[str]], backends: Sequence[str],
                    report: ParityReport) -> List[str]:
    """The devices to run on: those asked for (default: cpu, and cuda where available); an
    asked-for device that is not available is recorded as not checked, its rows as skipped."""
    if devices is None:
        return ["cpu"] + (["cuda"] if cuda_available() else [])
    if isinstance(devices, str):
        devices = [devices]
    bad = [d for d in devices if d not in DEVICES]
    if bad or not devices:
        raise ValueError(f"devices: unknown {bad}; choose from {DEVICES}")
    run = []
    for dev in dict.fromkeys(devices):
        if dev == "cuda" and not cuda_available():
            report.not_checked.append("cuda: asked for, but torch.cuda.is_available() is False on this "
                                      "machine; CUDA parity NOT checked")
            report.rows += [ParityRow(b, "cuda", "-", status="skipped", note="no CUDA device")
                            for b in ["eager"] + list(backends)]
        else:
            run.append(dev)
    return run


def golden_check(fe: nn.Module) -> Dict[str, float]:
    """The thresholds golden.npz carries for ``fe`` (a Frontend or ModuleFrontend): the
    parity threshold, whether it is relative to the peak (1.0) or absolute (0.0), the dB
    per output unit (0.0: none) and the dB window of log outputs."""
    log = fe.output_kind == "log"
    return {"threshold": log_threshold(fe.db_per_unit) if log else LINEAR_REL_TOL,
            "relative": 0.0 if log else 1.0, "db_per_unit": float(fe.db_per_unit or 0.0),
            "window_db": window_for(fe.spec)}


def bound_scale(reference: nn.Module, x: np.ndarray, kind: str,
                threshold: float) -> Tuple[Optional[np.ndarray], List[str]]:
    """The per-value scale of the absolute ``threshold`` of a log output for the float64
    ``reference`` on ``x`` (None: not scaled; linear outputs never are) and the report's
    lines saying why (:func:`nnaudio_export.tolerances.normalisation_bound_scale`)."""
    scaled = normalisation_bound_scale(reference, x, threshold) if kind == "log" else None
    return (None, []) if scaled is None else (scaled[0], [scaled[1]])


def float64_reference(fe: nn.Module, from_spec: bool) -> nn.Module:
    """The float64 reference of ``fe``: rebuilt from its spec (kernels never rounded to
    float32) when ``from_spec``, else a float64 deep copy of the module itself (trained or
    loaded weights, any module)."""
    if from_spec:
        return Frontend.from_spec(fe.spec, dtype=torch.float64).eval()
    return copy.deepcopy(fe).double().eval()


def run_float64(reference: nn.Module, x: np.ndarray) -> np.ndarray:
    """``reference``'s float64 output for the input batch ``x`` (a Frontend casts its input
    itself; a module's float32 audio is cast to float64 first)."""
    xt = torch.from_numpy(x)
    if isinstance(reference, ModuleFrontend):
        xt = xt.double()
    with torch.inference_mode():
        return reference(xt).numpy()


def golden_data(fe: nn.Module, from_spec: bool) -> Tuple[np.ndarray, np.ndarray, Dict[str, Any]]:
    """golden.npz's content for ``fe``: the inputs (:func:`nnaudio_export.bundle.
    golden_input`), the float64 reference outputs and :func:`golden_check`, plus ``scale``
    (per output value) where the bound is scaled (:func:`bound_scale`)."""
    x = golden_input(fe)
    check: Dict[str, Any] = dict(golden_check(fe))
    reference = float64_reference(fe, from_spec)
    y64 = run_float64(reference, x)
    scale, _ = bound_scale(reference, x, fe.output_kind, check["threshold"])
    if scale is not None:
        check["scale"] = scale
    if amplifies_rounding(fe):      # the per-item spread, measured now on this machine
        check["item_threshold"] = measured_spread(fe.eval(), x, y64, "cpu")
    return x, y64, check


def load_golden(bundle_dir: Path, manifest: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """golden.npz's arrays, after its sha256 is checked against the manifest."""
    with np.load(io.BytesIO(read_golden(bundle_dir, manifest)), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _as_frontend(module: nn.Module, manifest: Dict[str, Any]) -> nn.Module:
    """``module`` as something with example_input / spec: a Frontend or ModuleFrontend as
    is, any other module wrapped with the manifest's rate, length and output kind."""
    if isinstance(module, (Frontend, ModuleFrontend)):
        return module
    return ModuleFrontend(module, manifest["sample_rate"], manifest["num_samples"],
                          manifest["output"]["kind"], manifest["output"].get("db_per_unit"))


def _references(d: Path, manifest: Dict[str, Any], signals: Sequence[str], golden_only: bool,
                module: Optional[nn.Module]) -> Dict[str, Any]:
    """What the artifacts are compared with: the input batch ``x``, the float32 eager module
    (None: no eager rows), the float64 output ``y64`` and its reference name, the threshold,
    metric and dB window. With ``module``: that module and its float64 deep copy; for a
    bundle its spec rebuilds (and not ``golden_only``): the spec's; else golden.npz."""
    kind = manifest["output"]["kind"]
    dbu = manifest["output"].get("db_per_unit")
    if module is None and (golden_only or not rebuildable(manifest)):
        g = load_golden(d, manifest)
        dbu = float(g["db_per_unit"]) or None
        scale = g["scale"].astype(np.float64) if "scale" in g else None
        return {"x": g["input"], "eager": None, "y64": g["output"].astype(np.float64),
                "ref_name": "golden", "thr": float(g["threshold"]), "window": float(g["window_db"]),
                "limits": g.get("item_threshold"),
                "metric": "max_rel" if float(g["relative"]) else "max_abs", "dbu": dbu,
                "kind": "linear" if float(g["relative"]) else "log", "scale": scale,
                "conditioning": ["golden.npz carries a per-value bound scale (up to "
                                 f"{float(scale.max()):.3g}): its export found the input ill-conditioned"]
                if scale is not None else []}
    fe = _as_frontend(module, manifest) if module is not None else Frontend.from_spec(manifest["spec"])
    x = fe.example_input(tuple(signals))
    if manifest.get("batch"):
        reps = int(np.ceil(manifest["batch"] / x.shape[0]))
        x = np.concatenate([x] * reps)[: manifest["batch"]]
    reference = float64_reference(fe, module is None)
    y64 = run_float64(reference, x)
    thr = log_threshold(dbu) if kind == "log" else LINEAR_REL_TOL
    scale, why = bound_scale(reference, x, kind, thr)
    return {"x": x, "eager": fe, "y64": y64, "ref_name": "float64_cpu", "dbu": dbu, "kind": kind,
            "thr": thr, "metric": "max_abs" if kind == "log" else "max_rel",
            "limits": "spread" if amplifies_rounding(fe) else None,
            "window": window_for(fe.spec), "scale": scale, "conditioning": why}


def _run_backend(d: Path, manifest: Dict[str, Any], b: str, dev: str, xt: torch.Tensor,
                 expected_sha256: Optional[str]) -> np.ndarray:
    rt = load(d, backend=b, device=dev, expected_sha256=expected_sha256)
    fixed = manifest.get("batch")
    if fixed and xt.shape[0] > fixed:     # golden items beyond a fixed batch: in batches
        return np.concatenate([rt(xt[i:i + fixed].to(dev)).detach().cpu().numpy()
                               for i in range(0, xt.shape[0], fixed)])
    out = rt(xt.to(dev)).detach().cpu().numpy()
    if not fixed:
        # A dynamic batch axis must also take batch 1 (AOTInductor once refused it).
        one = rt(xt[:1].to(dev)).detach().cpu().numpy()
        out = np.concatenate([one, out[1:]]) if out.shape[0] > 1 else one
    return out


def verify(bundle_dir: Union[str, Path], devices: Optional[Sequence[str]] = None,
           backends: Optional[Sequence[str]] = None,
           signals: Sequence[str] = ("speech", "tones", "noise"),
           progress: Optional[Callable[[str], None]] = None,
           expected_sha256: Optional[str] = None, allow_skip: bool = False,
           golden_only: bool = False, module: Optional[nn.Module] = None) -> ParityReport:
    """Check exported artifacts x devices against (a) the eager module rebuilt from the
    spec (float32, same device) and (b) a float64 CPU reference, on the frontend's example
    input for ``signals`` (audio, or for a synthesis bundle the signals' STFT).

    ``devices``: default cpu, plus cuda where available; a device asked for by name that
    cannot run makes ``ok`` False unless ``allow_skip``. ``backends``: default every backend
    of a bundle pinned by ``expected_sha256`` (its manifest's digest), else only ONNX Runtime
    (TorchScript and .pt2 are code: they run on an unpinned bundle only when named here).
    The eager rows always run, except against golden.npz.

    ``golden_only=True``, or a bundle whose spec cannot rebuild it (manifest ``source.kind``
    'trained_frontend' or 'module'): each backend is compared with golden.npz's float64
    outputs on its inputs, with its thresholds (reference 'golden'; no spec, no package
    reference needed). ``module``: compare with that module (float32 eager) and its float64
    deep copy instead (a Frontend, one of our layers or a model; what export does for
    trained frontends and modules)."""
    say = progress or (lambda msg: None)
    d = Path(bundle_dir)
    manifest = read_manifest(d, expected_sha256)
    check_files(d, manifest)
    ref = _references(d, manifest, signals, golden_only, module)
    n_ref = ref["y64"].shape[0]
    x = ref["x"]
    if ref["eager"] is None and manifest.get("batch"):
        # golden items repeated to whole fixed batches (the first n_ref outputs are compared)
        total = int(np.ceil(n_ref / manifest["batch"])) * manifest["batch"]
        x = np.concatenate([x] * int(np.ceil(total / n_ref)))[:total]
    names = list(signals) if ref["eager"] is not None else [f"golden[{i}]" for i in range(n_ref)]
    report = ParityReport(str(d), manifest["output"]["kind"], names, log_db_window=ref["window"],
                          allow_skip=bool(allow_skip), conditioning=ref["conditioning"])
    scale = ref["scale"]
    backends = _choose_backends(manifest, backends, expected_sha256 is not None, report)
    run_devices = _choose_devices(devices, backends, report)
    xt = torch.from_numpy(x)
    for dev in run_devices:
        if dev == "cuda":
            disable_tf32()
        rows = []
        y32 = None
        if ref["eager"] is not None:
            with torch.inference_mode():
                y32 = ref["eager"].to(dev).eval()(xt.to(dev)).cpu().numpy()
            rows.append(("eager", y32))
        for b in backends:
            say(f"running {b} on {dev}")
            pt2 = model_format("pt2").file
            if b == "pt2" and manifest["files"].get(pt2, {}).get("device", "cpu") != dev:
                report.rows.append(ParityRow(b, dev, "-", status="skipped",
                                             note=f"{pt2} compiled for {manifest['files'][pt2].get('device')}"))
                continue
            try:
                rows.append((b, _run_backend(d, manifest, b, dev, xt, expected_sha256)))
            except Exception as exc:
                report.rows.append(ParityRow(b, dev, "-", status="error",
                                             note=f"{type(exc).__name__}: {str(exc)[:200]}"))
        limits = ref["limits"]
        if isinstance(limits, str):
            limits = measured_spread(ref["eager"], x[:n_ref], ref["y64"], dev, y32[:n_ref])
        for name, y in rows:
            refs = [(ref["ref_name"], ref["y64"])]
            if name != "eager" and y32 is not None:
                refs.insert(0, ("eager_float32", y32))
            for ref_name, want in refs:
                report.rows.append(_judge(name, dev, ref_name, y[:n_ref], want, ref, scale, limits, names))
    if ref["eager"] is not None:
        ref["eager"].to("cpu")
    return report


def _judge(name: str, dev: str, ref_name: str, y: np.ndarray, want: np.ndarray, ref: Dict[str, Any],
           scale: Optional[np.ndarray], limits: Optional[np.ndarray], names: Sequence[str]) -> ParityRow:
    """One row: ``y`` against ``want`` with the bundle's threshold (per value times ``scale``
    where an ill-conditioned normalisation scales it), or with per-item ``limits`` (a
    rounding-amplifying module: the row's figures are those of the item nearest its limit,
    relative to that item's peak)."""
    m = compare(y, want, ref["kind"], ref["dbu"], ref["window"], scale)
    note = ""
    if limits is not None:
        rel = item_rel(y, want)
        worst = int(np.argmax(rel / limits))
        value, thr = float(rel[worst]), float(limits[worst])
        m["max_rel"] = value
        m["max_abs"] = float(np.abs(np.asarray(y[worst], np.float64) - want[worst]).max())
        note = (f"per item, {names[worst]} nearest its limit: max_rel <= max({LINEAR_REL_TOL:g}, "
                f"{SPREAD_FACTOR:g} x eager float32 vs float64 of the item)")
    else:
        value, thr = (m[ref["metric"]] if scale is None else m["max_scaled"]), ref["thr"]
    ok = bool(value <= thr)
    return ParityRow(name, dev, ref_name, m["max_abs"], m["max_rel"], thr, ref["metric"], ok,
                     "passed" if ok else "failed", note=note, max_abs_80db=m.get("max_abs_80db"),
                     max_scaled=m.get("max_scaled"), bound_scale=None if scale is None else float(scale.max()))


def write_report(report: ParityReport, path: Union[str, Path]) -> None:
    Path(path).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
