#!/usr/bin/env python3
"""Minimal batch "server" loop: every WAV file in a directory -> one features ``.npy`` each,
through one ONNX Runtime session of an nnaudio_export bundle.

    python examples/serve_ort.py BUNDLE_DIR WAV_DIR OUT_DIR [--batch 8] [--device cpu|cuda]

For each ``*.wav`` (16-bit PCM or 32-bit float; sorted by name): check the sample rate and
channel count against the manifest, pad / trim to ``num_samples`` when the manifest's
``length_policy`` is 'pad_or_trim' (otherwise a wrong length is an error for that file),
convert to the bundle's input dtype (float32: int16 / 32768; int16: round(float * 32768)),
batch up to ``--batch`` clips, run the Runtime and write ``OUT_DIR/<stem>.npy``
(float32, the features of one clip without the batch axis). A file that fails is reported
and skipped; the exit status is 1 when any file failed, 2 for usage errors, else 0.
Progress goes to stderr (tqdm when installed, otherwise a plain counter).
"""
import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from nnaudio_export.wav import ClipError, prepare, save_npy


def _progress(total: int, enabled: bool):
    """An object with update(n) / close(): tqdm if importable, else a stderr counter."""
    if not enabled:
        class Quiet:
            def update(self, n: int = 1) -> None: ...
            def close(self) -> None: ...
        return Quiet()
    try:
        from tqdm import tqdm
        return tqdm(total=total, unit="file", file=sys.stderr, dynamic_ncols=True)
    except ImportError:
        class Counter:
            def __init__(self) -> None:
                self.n, self.t0 = 0, time.time()

            def update(self, n: int = 1) -> None:
                self.n += n
                rate = self.n / max(time.time() - self.t0, 1e-9)
                print(f"\r{self.n}/{total} files ({rate:.1f}/s)", end="", file=sys.stderr, flush=True)

            def close(self) -> None:
                print(file=sys.stderr, flush=True)
        return Counter()


def _batches(items: Sequence[Path], size: int) -> Iterator[List[Path]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


def item_workers_arg(text: str) -> Union[int, str]:
    """--item-workers: an integer or 'auto' (nx.load checks the value)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'auto', got {text!r}") from None


def serve(bundle_dir: Path, wav_dir: Path, out_dir: Path, batch: int = 8, device: str = "cpu",
          progress: bool = True, runtime: Optional[Any] = None, item_workers: Union[int, str] = 1) -> Dict[str, Any]:
    """Process every ``*.wav`` of ``wav_dir``; returns {'done': [...], 'failed': {name: why}, 'seconds'}.
    ``item_workers=N`` (CPU): each batch's clips run on N single-threaded sessions side by side
    (``nx.load``'s option; steadier than intra-op threads for a loop that feeds batches back to back);
    ``'auto'``: each batch the faster way lately (intra-op threads or as many workers)."""
    import nnaudio_export as nx
    if batch < 1:
        raise ValueError(f"--batch must be >= 1, got {batch}")
    rt = runtime if runtime is not None else nx.load(bundle_dir, backend="onnxruntime", device=device,
                                                     item_workers=item_workers)
    manifest = rt.manifest
    fixed = manifest.get("batch")
    if fixed is not None and batch > fixed:
        batch = int(fixed)  # a fixed-batch bundle runs exactly `fixed` clips per call
    files = sorted(p for p in Path(wav_dir).iterdir() if p.suffix.lower() == ".wav" and p.is_file())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done: List[str] = []
    failed: Dict[str, str] = {}
    bar = _progress(len(files), progress)
    t0 = time.time()
    try:
        for group in _batches(files, batch):
            clips, names = [], []
            for p in group:
                try:
                    clips.append(prepare(p, manifest))
                    names.append(p)
                except (ClipError, OSError) as exc:
                    failed[p.name] = str(exc)
                    bar.update(1)
            if not clips:
                continue
            x = np.stack(clips)
            if fixed is not None and len(x) < fixed:  # fill a fixed batch with silence
                x = np.concatenate([x, np.zeros((fixed - len(x),) + x.shape[1:], x.dtype)])
            try:
                y = rt(x)
            except Exception as exc:  # one bad batch must not stop the loop
                for p in names:
                    failed[p.name] = f"inference failed: {type(exc).__name__}: {exc}"
                bar.update(len(names))
                continue
            for i, p in enumerate(names):
                save_npy(out / (p.stem + ".npy"), y[i])
                done.append(p.name)
            bar.update(len(names))
    finally:
        bar.close()
    return {"done": done, "failed": failed, "seconds": time.time() - t0}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path, help="bundle directory with model.onnx")
    ap.add_argument("wav_dir", type=Path, help="directory of .wav files")
    ap.add_argument("out_dir", type=Path, help="where <stem>.npy files go")
    ap.add_argument("--batch", type=int, default=8, help="clips per ONNX Runtime call (default 8)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--item-workers", type=item_workers_arg, default=1,
                    help="CPU: run each batch's clips on N single-threaded sessions side by side (default 1: "
                         "one session with ONNX Runtime's intra-op threads), or 'auto': each batch the way "
                         "that was faster lately")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    args = ap.parse_args(argv)
    if not args.wav_dir.is_dir():
        print(f"serve_ort: error: {args.wav_dir} is not a directory", file=sys.stderr)
        return 2
    try:
        stats = serve(args.bundle, args.wav_dir, args.out_dir, batch=args.batch, device=args.device,
                      progress=not args.quiet, item_workers=args.item_workers)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"serve_ort: error: {exc}", file=sys.stderr)
        return 2
    for name, why in sorted(stats["failed"].items()):
        print(f"serve_ort: failed: {name}: {why}", file=sys.stderr)
    n = len(stats["done"])
    print(f"serve_ort: {n} file(s) -> {args.out_dir} in {stats['seconds']:.2f} s"
          + (f", {len(stats['failed'])} failed" if stats["failed"] else ""), file=sys.stderr)
    return 1 if stats["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
