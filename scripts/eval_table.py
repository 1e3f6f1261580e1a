"""Markdown table of `dfscan eval` output lines (JSON, one per condition) for model cards.

usage: python3 scripts/eval_table.py NAME=FILE.jsonl [NAME=FILE.jsonl ...]

A sequence model's "frame" columns are per window of T crops; its crop count says how many
windows the crops made.
"""
import json
import sys

print("| model | split | condition | crops / videos | frame AUC | frame AP | frame EER | video AUC | video AP | video EER | video acc@0.5 | video log loss |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for arg in sys.argv[1:]:
    name, path = arg.split("=", 1)
    for line in open(path):
        d = json.loads(line)
        f, v = d["frame"], d["video"]
        fmt = lambda x: "n/a" if x is None else f"{x:.3f}"
        crops = d["crops"] if d.get("frame_unit", "crop") == "crop" else f"{d['crops']} ({d['examples']} windows)"
        print(f"| {name} | {d['split']} | {d['condition']} | {crops} / {d['videos']} | {fmt(f['auc'])} | "
              f"{fmt(f['average_precision'])} | {fmt(f['eer'])} | {fmt(v['auc'])} | {fmt(v['average_precision'])} | "
              f"{fmt(v['eer'])} | {fmt(v['accuracy'])} | {fmt(v['log_loss'])} |")
