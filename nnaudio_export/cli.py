"""``nnaudio-export``: presets | build | verify | inspect (| triton | bench).

User errors print one line on stderr and exit 2 (``--debug`` shows the traceback);
``verify`` exits 1 when parity fails.
"""
import argparse
import json
import sys
import time
from typing import List, Optional

from .bench import add_cli as add_bench
from .triton import add_cli as add_triton


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
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    t0 = time.time()
    out = export(args.source, args.out, formats=formats, batch=args.batch, overwrite=args.force,
                 seconds=args.seconds, num_samples=args.num_samples, verify=not args.no_verify,
                 progress=_progress, precision=args.precision, num_frames=args.num_frames)
    manifest = json.loads((out / "manifest.json").read_text())
    print(f"bundle: {out}  ({time.time() - t0:.1f} s)")
    print(f"input  {manifest['input']['name']}: {manifest['input']['shape']} {manifest['input']['dtype']}")
    print(f"output {manifest['output']['name']}: {manifest['output']['shape']} float32")
    if "parity" in manifest:
        from .parity import ParityReport
        rep = ParityReport.from_dict(manifest["parity"])
        print(rep.table())
        if not rep.ok:
            return 1
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .parity import verify, write_report
    devices = ("cpu", "cuda") if args.device == "all" else (args.device,)
    report = verify(args.bundle, devices=devices, progress=_progress)
    print(report.table())
    if args.json:
        write_report(report, args.json)
    return 0 if report.ok else 1


def cmd_inspect(args: argparse.Namespace) -> int:
    from .manifest import check_files, read_manifest
    m = read_manifest(args.bundle)
    try:
        check_files(args.bundle, m)
        integrity = "all sha256 match"
    except ValueError as exc:
        integrity = f"MISMATCH: {exc}"
    print(f"name:        {m['name']}")
    print(f"reference:   {m.get('reference') or '-'}")
    audio = "input" if m["input"].get("kind", "audio") == "audio" else "output"
    print(f"sample rate: {m['sample_rate']:g} Hz, {m['num_samples']} samples of {audio} audio "
          f"({m['num_samples'] / m['sample_rate']:.3f} s), length policy {m.get('length_policy', 'exact')}")
    layout = f" (spectrum, layout {m['input']['layout']})" if "layout" in m["input"] else ""
    print(f"input:       {m['input']['name']} {m['input']['shape']} {m['input']['dtype']}{layout}")
    print(f"output:      {m['output']['name']} {m['output']['shape']} float32 ({m['output']['kind']})")
    print(f"created:     {m['created']}  torch {m['versions']['torch']}, onnx {m['versions'].get('onnx')}")
    for name, f in m["files"].items():
        extra = {k: v for k, v in f.items() if k in ("method", "exporter", "opset", "ir_version", "device")}
        print(f"file:        {name:10s} {f['size']:>10d} B  sha256 {f['sha256'][:16]}…  {extra}")
    print(f"integrity:   {integrity}")
    if "parity" in m:
        print(f"parity:      {'ok' if m['parity']['ok'] else 'FAILED'} at export (cpu)")
    if "reference_error" in m:
        print(f"reference:   {json.dumps(m['reference_error'])}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nnaudio-export", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("presets", help="list presets").set_defaults(func=cmd_presets)
    b = sub.add_parser("build", help="export a preset or spec to a bundle")
    b.add_argument("source", help="preset name or spec .json path")
    b.add_argument("--out", required=True, help="bundle directory to create")
    b.add_argument("--formats", default="torchscript,onnx,pt2")
    b.add_argument("--batch", type=int, default=None, help="fix the batch size (default: dynamic)")
    g = b.add_mutually_exclusive_group()
    g.add_argument("--seconds", type=float, default=None, help="override the duration")
    g.add_argument("--num-samples", type=int, default=None, help="override the input length")
    g.add_argument("--num-frames", type=int, default=None,
                   help="override a synthesis spec's input frames (spectrum_input.num_frames)")
    b.add_argument("--precision", choices=("single", "extended"), default=None,
                   help="Fourier transform precision: 'single' (one float32 conv, fastest) or "
                        "'extended' (error-free split, ~2-3x the transform's time, ~100x less "
                        "rounding); default: the preset's / spec's own")
    b.add_argument("--force", action="store_true", help="replace an existing bundle")
    b.add_argument("--no-verify", action="store_true", help="skip the parity check at export")
    b.set_defaults(func=cmd_build)
    v = sub.add_parser("verify", help="check a bundle's numerical parity (exit 1 on failure)")
    v.add_argument("bundle")
    v.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    v.add_argument("--json", default=None, help="write the report as JSON")
    v.set_defaults(func=cmd_verify)
    i = sub.add_parser("inspect", help="show a bundle's manifest and check its files")
    i.add_argument("bundle")
    i.set_defaults(func=cmd_inspect)
    add_triton(sub)
    add_bench(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError, TypeError, OSError) as exc:
        if args.debug:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"nnaudio-export: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
