"""The naive Python pipeline that `scripts/bench.sh` compares dfscan with: OpenCV VideoCapture
(grab every frame, retrieve the sampled ones) + OpenCV's res10 SSD + MesoInception4 in
PyTorch, loading the same weights as `dfscan scan --model models/mesoinception4.safetensors`.

Per clip: `--frames` frames evenly spread over the clip, faces at confidence >= 0.5, a square
crop with 0.3 of the box on each side (black outside the frame), resized to 256, pixels
(x - 0.5) / 0.5, one batch per clip. Prints one JSON line per clip and a summary line with
seconds per stage. Needs torch, safetensors and cv2 (opencv-python-headless).

usage: python scripts/bench_reference.py [--frames 32] [--threads N] CLIP...
"""
import argparse
import json
import os
import sys
import time

import cv2
import numpy as np
import torch
from safetensors.torch import load_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
# The port's layout, with the same state_dict keys as src/models/meso.rs.
from torchscript_examples import MesoInception4  # noqa: E402


def square_crop(frame, box, margin=0.3, size=256):
    x, y, w, h = box
    side = max(1, round(max(w, h) * (1 + 2 * margin)))
    x0, y0 = round(x + w / 2 - side / 2), round(y + h / 2 - side / 2)
    out = np.zeros((side, side, 3), np.uint8)
    fh, fw = frame.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, fw), min(y0 + side, fh)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = frame[sy0:sy1, sx0:sx1]
    return cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="torch and OpenCV threads (0: their default)")
    ap.add_argument("--weights", default=os.path.join(REPO, "models/mesoinception4.safetensors"))
    ap.add_argument("--res10", default=os.path.join(REPO, "models/public"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    net = cv2.dnn.readNetFromCaffe(os.path.join(args.res10, "deploy.prototxt.txt"),
                                   os.path.join(args.res10, "res10_300x300_ssd_iter_140000.caffemodel"))
    model = MesoInception4()
    model.load_state_dict(load_file(args.weights), strict=True)
    model.eval()
    spent = {"decode": 0.0, "detect": 0.0, "crop": 0.0, "infer": 0.0}
    counts = {"clips": 0, "frames": 0, "faces": 0}
    for clip in args.clips:
        t0 = time.perf_counter()
        cap = cv2.VideoCapture(clip)
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        wanted = {int(total * i / args.frames) for i in range(args.frames)} if total > 0 else set(range(args.frames))
        frames, i = [], 0
        while cap.grab():
            if i in wanted:
                ok, frame = cap.retrieve()
                if ok:
                    frames.append(frame)
            i += 1
            if total > 0 and i > max(wanted):
                break
        cap.release()
        t1 = time.perf_counter()
        boxes = []
        for frame in frames:
            h, w = frame.shape[:2]
            blob = cv2.dnn.blobFromImage(frame, 1.0, (300, 300), (104.0, 177.0, 123.0))
            net.setInput(blob)
            det = net.forward()[0, 0]
            for r in det[det[:, 2] >= 0.5]:
                x1, y1, x2, y2 = np.clip(r[3:7], 0, 1) * [w, h, w, h]
                if x2 - x1 >= 16 and y2 - y1 >= 16:
                    boxes.append((frame, (x1, y1, x2 - x1, y2 - y1)))
        t2 = time.perf_counter()
        crops = [cv2.cvtColor(square_crop(f, b), cv2.COLOR_BGR2RGB) for f, b in boxes]
        t3 = time.perf_counter()
        score = None
        if crops:
            x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255.0).sub(0.5).div(0.5)
            with torch.no_grad():
                score = float(torch.sigmoid(model(x)).mean())
        t4 = time.perf_counter()
        for k, a, b in (("decode", t0, t1), ("detect", t1, t2), ("crop", t2, t3), ("infer", t3, t4)):
            spent[k] += b - a
        counts["clips"] += 1
        counts["frames"] += len(frames)
        counts["faces"] += len(crops)
        print(json.dumps({"path": clip, "frames": len(frames), "faces": len(crops), "score": score, "seconds": round(t4 - t0, 3)}))
    print(json.dumps({"summary": True, **counts, "seconds": {k: round(v, 3) for k, v in spent.items()}}))


if __name__ == "__main__":
    sys.exit(main())
