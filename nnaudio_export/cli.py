"""nnaudio-export: presets | build | verify | inspect | run | triton | bench.

User errors print one line on stderr and exit 2 (``--debug``, before or after the command,
shows the traceback); ``verify`` exits 1 when parity fails or an asked-for device could not
be checked, ``inspect`` when a file does not match the manifest. Heavy modules (torch) are
imported by the commands that need them, so ``--help`` and ``--version`` are instant.
"""
import argparse
import signal
import sys
import time
from typing import List, Optional

from ._version import __version__
from .install import request_stop
from .bench.options import add_cli as add_bench
from .manifest import FORMATS
from .triton import add_cli as add_triton

DESCRIPTION = ("Export spectrogram frontends (presets or spec files) as verified TorchScript / "
               "ONNX / AOTInductor bundles, then verify, inspect, run or serve them.")
BACKEND_CHOICES = ("onnxruntime", "torchscript", "pt2", "eager")


HF_PREFIX = "hf:"


def _progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cmd_presets(args: argparse.Namespace) -> int:
    from . import presets
    rows = []
    for name in presets.names():
        spec = presets.get_spec(name)
        fe = presets.load(name)
        rows.append((name, f"{spec['sample_rate']:g}", str(fe.num_samples),
                     "x".join(str(d) for d in fe.output_shape),
                     f"{fe.input_name}:" + "x".join(str(d) for d in fe.input_shape),
                     spec.get("reference", "-")))
    head = ("preset", "sample_rate", "num_samples", "output_shape", "input", "reference")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(5)]
    print("  ".join(h.ljust(w) for h, w in zip(head[:5], widths)) + "  " + head[5])
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5])
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from .api import export
    from .manifest import manifest_sha256, read_manifest
    t0 = time.time()
    source, seconds, num_samples = args.source, args.seconds, args.num_samples
    if source.startswith(HF_PREFIX):      # a Hugging Face extractor's config: its own length rules
        from .convert.hf import hf_spec
        source = hf_spec(source[len(HF_PREFIX):], seconds=seconds, num_samples=num_samples)
        seconds = num_samples = None
    out = export(source, args.out, formats=args.formats, batch=args.batch, overwrite=args.force,
                 seconds=seconds, num_samples=num_samples, verify=not args.no_verify,
                 progress=_progress, precision=args.precision, num_frames=args.num_frames,
                 streaming=args.streaming, chunk_ms=args.chunk_ms, pt2_device=args.pt2_device,
                 target=args.target)
    manifest = read_manifest(out)
    print(f"bundle: {out}  ({time.time() - t0:.1f} s)")
    print(f"input  {manifest['input']['name']}: {manifest['input']['shape']} {manifest['input']['dtype']}")
    print(f"output {manifest['output']['name']}: {manifest['output']['shape']} float32")
    print(f"manifest sha256: {manifest_sha256(out)}  (pin it: --expect-sha256 / expected_sha256=)")
    if "reference_error" in manifest:
        print(f"reference:   {_reference_line(manifest['reference_error'])}")
    if "streaming" in manifest:
        st = manifest["streaming"]
        print(f"streaming: {st['chunk_samples']}-sample chunks, state {st['state']['size']} floats, "
              f"up to {st['max_frames']} frames a call, lookahead {st['lookahead_samples']} samples")
        for backend, entry in manifest.get("parity", {}).get("streaming", {}).items():
            print(f"  streamed vs offline ({backend}): {entry['max_error_x_peak']:.2e} x peak")
    elif "parity" in manifest:
        from .parity import ParityReport
        rep = ParityReport.from_dict(manifest["parity"])
        print(rep.table())
        if not rep.ok:
            return 1
    return 0


def _reference_line(ref: dict) -> str:
    """The manifest's reference error in words (a missing package says how to get it)."""
    if "max_abs_error" in ref:
        return (f"max |ours - {ref.get('reference')}| = {ref['max_abs_error']:.3g} {ref.get('units', '')} "
                f"({ref.get('signal')}, {ref.get('num_samples')} samples)")
    err = str(ref.get("error", "unknown error"))
    if err.startswith(("ModuleNotFoundError", "ImportError")):
        return (f"not measured: the reference package {ref.get('package')!r} is not installed "
                "(scripts/setup_env.sh test installs every reference; then rebuild)")
    return f"not measured: {err}"


def cmd_verify(args: argparse.Namespace) -> int:
    from .parity import verify, write_report
    devices = {"auto": None, "all": ("cpu", "cuda")}.get(args.device, (args.device,))
    report = verify(args.bundle, devices=devices, backends=args.backend, progress=_progress,
                    expected_sha256=args.expect_sha256, allow_skip=args.allow_skip,
                    golden_only=args.golden_only)
    print(report.table())
    if args.json:
        write_report(report, args.json)
    return 0 if report.ok else 1


def cmd_inspect(args: argparse.Namespace) -> int:
    from .manifest import BundleError, check_files, manifest_sha256, read_manifest
    m = read_manifest(args.bundle, args.expect_sha256)
    try:
        check_files(args.bundle, m)
        integrity = "all sha256 match"
    except BundleError as exc:
        integrity = f"MISMATCH: {exc}"
    versions = m.get("versions") or {}
    print(f"name:        {m.get('name', '-')}")
    print(f"reference:   {m.get('reference') or '-'}")
    audio = "input" if m["input"].get("kind", "audio") == "audio" else "output"
    print(f"sample rate: {m['sample_rate']:g} Hz, {m['num_samples']} samples of {audio} audio "
          f"({m['num_samples'] / m['sample_rate']:.3f} s), length policy {m.get('length_policy', 'exact')}")
    layout = f" (spectrum, layout {m['input']['layout']})" if "layout" in m["input"] else ""
    print(f"input:       {m['input'].get('name', '-')} {m['input']['shape']} {m['input']['dtype']}{layout}")
    print(f"output:      {m['output'].get('name', '-')} {m['output']['shape']} float32 ({m['output']['kind']})")
    print(f"created:     {m.get('created', '-')}  torch {versions.get('torch', '-')}, onnx {versions.get('onnx', '-')}")
    print(f"laid out:    for {(m.get('spec') or {}).get('target', 'cpu')} (build --target)")
    for name, f in m["files"].items():
        extra = {k: v for k, v in f.items() if k in ("method", "exporter", "opset", "ir_version", "device")}
        print(f"file:        {name:10s} {f['size']:>10d} B  sha256 {f['sha256'][:16]}…  {extra}")
    src = m.get("source") or {"kind": "spec"}
    state = f", state sha256 {src['state_sha256'][:16]}…" if "state_sha256" in src else ""
    print(f"source:      {src.get('kind')}{' ' + src['class'] if 'class' in src else ''}{state}")
    if m.get("golden"):
        g = m["golden"]
        print(f"golden:      golden.npz {g['size']:>10d} B  sha256 {g['sha256'][:16]}…  {g.get('items')} items")
    print(f"manifest:    sha256 {manifest_sha256(args.bundle)}")
    print(f"integrity:   {integrity}")
    if isinstance(m.get("parity"), dict):
        print(f"parity:      {'ok' if m['parity'].get('ok') else 'FAILED'} at export (cpu)")
    if isinstance(m.get("streaming"), dict):
        st = m["streaming"]
        print(f"streaming:   {st.get('chunk_samples')}-sample chunks, state {st.get('state', {}).get('size')} "
              f"floats, up to {st.get('max_frames')} frames a call, lookahead {st.get('lookahead_samples')} "
              "samples (run it with nx.stream or frontend_cli --stream)")
    if isinstance(m.get("reference_error"), dict):
        print(f"reference:   {_reference_line(m['reference_error'])}")
    return 0 if integrity.startswith("all") else 1


def cmd_run(args: argparse.Namespace) -> int:
    from .runtime import load
    from .wav import prepare, save_npy
    rt = load(args.bundle, backend=args.backend, device=args.device, expected_sha256=args.expect_sha256)
    x = prepare(args.wav, rt.manifest)
    batch = rt.batch or 1   # a fixed-batch bundle: repeat the clip, keep item 0
    y = rt(x[None].repeat(batch, axis=0))[0]
    save_npy(args.out, y)
    print(f"{args.wav} -> {args.out}: {list(y.shape)} float32 ({args.backend})")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench.driver import cmd_bench as run_bench
    return run_bench(args)


def _common() -> argparse.ArgumentParser:
    """--debug, accepted after the command too (its default is left to the main parser)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    return p


def _add_build(sub, common) -> None:
    b = sub.add_parser("build", parents=common, help="export a preset or spec to a bundle")
    b.add_argument("source", help="preset name, or a spec JSON file (any existing path is read as one), "
                                  "or hf:PATH (a Hugging Face preprocessor_config.json or model directory)")
    b.add_argument("--out", required=True, help="bundle directory to create")
    b.add_argument("--formats", default=",".join(FORMATS),
                   help=f"comma-separated, any of {', '.join(FORMATS)} (default: all; pt2 needs a C++ compiler)")
    b.add_argument("--batch", type=int, default=None,
                   help="fix the batch size, 1..4096 (default: a dynamic batch axis)")
    b.add_argument("--pt2-device", choices=("cpu", "cuda"), default="cpu",
                   help="compile the .pt2 for this machine's CPU (default) or its GPU (it then runs on "
                        "that GPU architecture only)")
    b.add_argument("--target", choices=("cpu", "cuda"), default=None,
                   help="the device the graph is laid out for (default: the spec's own, cpu): 'cuda' "
                        "runs the DFT's first stage as a MatMul (1.6-2x faster in ONNX Runtime on an H200, 1.7-1.9x slower on a CPU); "
                        "needs no GPU to build")
    g = b.add_mutually_exclusive_group()
    g.add_argument("--seconds", type=float, default=None, help="override the duration")
    g.add_argument("--num-samples", type=int, default=None, help="override the input length")
    g.add_argument("--num-frames", type=int, default=None,
                   help="override a synthesis spec's input frames (spectrum_input.num_frames)")
    b.add_argument("--precision", choices=("single", "extended"), default=None,
                   help="Fourier transform precision: 'single' (float32, fastest) or 'extended' (a DFT "
                        "in float64, ~2.4x the time of 'single' for whisper_80 in ONNX Runtime, "
                        "~1000x less rounding; other banks an error-free split); default: the "
                        "preset's / spec's own")
    b.add_argument("--force", action="store_true",
                   help="replace an existing bundle this tool wrote (anything else is refused)")
    b.add_argument("--no-verify", action="store_true", help="skip the parity check at export")
    b.add_argument("--streaming", action="store_true",
                   help="a streaming bundle: chunk + state in, completed frames + next state out")
    b.add_argument("--chunk-ms", type=float, default=None,
                   help="with --streaming: the chunk length in milliseconds (rounded to samples)")
    b.set_defaults(func=cmd_build)


def _add_bundle_commands(sub, common) -> None:
    pin = dict(default=None, metavar="HEX",
               help="refuse the bundle unless its manifest.json has this sha256 (from build / inspect)")
    v = sub.add_parser("verify", parents=common,
                       help="check a bundle's numerical parity (exit 1 on failure)",
                       description="Compare the bundle's backends with eager PyTorch and float64. "
                                   "A bundle is code: without --expect-sha256 only ONNX Runtime and "
                                   "eager run, unless --backend names others.")
    v.add_argument("bundle")
    v.add_argument("--device", choices=("auto", "cpu", "cuda", "all"), default="auto",
                   help="auto (default): cpu, and cuda where available; a device named here that "
                        "cannot run fails the check unless --allow-skip")
    v.add_argument("--backend", action="append", choices=BACKEND_CHOICES, default=None,
                   help="run this backend (repeatable); default: see above")
    v.add_argument("--expect-sha256", **pin)
    v.add_argument("--allow-skip", action="store_true", help="an unavailable device is not a failure")
    v.add_argument("--golden-only", action="store_true",
                   help="compare with the bundle's golden.npz only (automatic for a bundle of a trained "
                        "frontend or a module, which its spec cannot rebuild)")
    v.add_argument("--json", default=None, help="write the report as JSON")
    v.set_defaults(func=cmd_verify)
    i = sub.add_parser("inspect", parents=common,
                       help="show a bundle's manifest and digest, check its files (exit 1 on mismatch)")
    i.add_argument("bundle")
    i.add_argument("--expect-sha256", **pin)
    i.set_defaults(func=cmd_inspect)
    r = sub.add_parser("run", parents=common, help="run a bundle on one WAV file, write the features as .npy")
    r.add_argument("bundle")
    r.add_argument("wav", help="16-bit PCM or 32-bit float WAV at the bundle's sample rate")
    r.add_argument("out", help="output .npy (float32, the clip's features without a batch axis)")
    r.add_argument("--backend", choices=BACKEND_CHOICES, default="onnxruntime")
    r.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    r.add_argument("--expect-sha256", **pin)
    r.set_defaults(func=cmd_run)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nnaudio-export", description=DESCRIPTION)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--version", action="version", version=f"nnaudio-export {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    common = [_common()]
    sub.add_parser("presets", parents=common, help="list presets").set_defaults(func=cmd_presets)
    _add_build(sub, common)
    _add_bundle_commands(sub, common)
    add_triton(sub, parents=common)
    add_bench(sub, parents=common).set_defaults(func=cmd_bench)
    return p


def _interrupt(signum, frame) -> None:
    # SIGTERM unwinds like Ctrl-C, so temporary directories are removed on the way out; and
    # nothing is put in place afterwards even if a library swallows the KeyboardInterrupt.
    request_stop()
    raise KeyboardInterrupt


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("nnaudio-export: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError, TypeError, OSError) as exc:
        if args.debug:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"nnaudio-export: error: {msg}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
