"""Write a dfscan training manifest (path,label,group,faces,origin) for the two labelled corpora:
../shared/data (see its README.txt) and, when given, corpus2 as rebuilt by
../shared/corpus2/build.sh (see its README.txt).

- group keeps leaking items together on one side of a split: a DFDC fake with its original,
  both halves of a DeepFaceLive pair (by swap model), GHOST swaps with their source, the same
  person across sources; corpus2's own groups (a real source and the fakes made from it).
- faces is "detect" for videos and full frames, "whole" for images that already are face crops.
- origin is where an input comes from, the unit `dfscan cv` holds out: a model is scored on
  an origin it never trained on. Origins are chosen so each holds both labels.

usage: python3 scripts/manifest.py ../shared/data [../corpus2] > manifest.csv
"""
import csv
import os
import re
import sys

root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
# People who appear in several sources: one group each, whatever the source.
PEOPLE = {"obama": "person:obama", "ocasio": "person:aoc", "videoretalking_face3": "person:aoc"}


def group_of(dataset, path, source, notes):
    name = os.path.basename(path)
    stem = os.path.splitext(name)[0]
    for key, person in PEOPLE.items():
        if key in path.lower():
            return person
    pair = re.search(r"pair_id=(\S+?);", notes + ";")
    if dataset == "deepfacelive_pairs" and pair:
        # dfl_<Swap_Model>_<n>: one swap model's clips share streamers and footage.
        return "dfl:" + re.sub(r"_\d+$", "", pair.group(1)[len("dfl_"):])
    if pair:
        return pair.group(1)
    original = re.search(r"original: (\w+)", source)
    if original:
        return "dfdc:" + original.group(1)
    if dataset.startswith("dfdc"):
        return "dfdc:" + re.split(r"[_.]", source)[0]
    if dataset == "misc_examples":
        if name.startswith("FaceForensic__ex_original_actors") or "deepfakedetection" in name:
            return "ffpp:actors"
        if name.startswith("FaceForensic__"):
            return "ffpp:example"
        if name.startswith("Deepfake-Det__"):
            return "ffpp:cyshih"
        if "drake" in name:
            return "person:drake"
    if dataset == "talking_heads" and "aniportrait" in name:
        # A generated panel and its driving video show the same motion.
        return "aniportrait:" + stem.split("_")[1]
    return f"{dataset}:{stem}"


def faces_mode(dataset, path):
    crops = ("dfdc_facecrops_genconvit", "gan_faces_deepsafe")
    if dataset in crops or "/faces/" in path or "MesoNet__" in path or "0000_fake_64" in path:
        return "whole"
    return "detect"


# Corpus v1 folders -> origin. DFDC crops and clips are one origin (one competition's
# pipeline); the two UADFV clips join the FF++/MesoNet examples (too few to stand alone).
ORIGINS = {
    "dfdc_sample5": "dfdc",
    "dfdc_facecrops_genconvit": "dfdc",
    "deepfacelive_pairs": "deepfacelive",
    "ghost_faceswap": "ghost",
    "talking_heads": "talking-heads",
    "gan_faces_deepsafe": "gan-faces",
    "misc_examples": "ffpp-misc",
    "genconvit_prediction_samples": "ffpp-misc",
}

# corpus2 repositories whose clips are Wav2Lip-family lip-syncs or their inputs, plus the GRID
# and LRW-style real clips; the rest (HyperLips, SadTalker/VideoReTalking, the DFDC-style swap,
# LRS3/MEAD and face-tool reals) is the other corpus2 origin. Whole repositories move together,
# so a source clip and its fakes never straddle two origins.
C2_WAV2LIP = {
    "Akash-Jariwala", "Mahfoozalam1516", "Sneha100802", "Syedjunaid30", "bchachar", "haroon001", "jijnasu",
    "kuwarkapur", "p2806", "popocheng", "primepake", "saifhassan", "uralskayamariya", "vivek-lakhani-1",
    "xiaoou2", "yylgoodlucky", "rizkiarm", "astorfi",
}


def corpus2_rows(root):
    with open(os.path.join(root, "labels.csv")) as f:
        for row in csv.DictReader(f):
            owner = row["source_repo"].split("/")[0]
            origin = "c2-wav2lip" if owner in C2_WAV2LIP else "c2-other"
            yield os.path.join(root, row["file"]), row["label"], "c2:" + row["group"], "detect", origin


def corpus1_rows(root):
    with open(os.path.join(root, "all_labels.csv")) as f:
        for row in csv.DictReader(f):
            if row["label"] not in ("real", "fake"):
                continue
            path = os.path.join(root, row["path"])
            yield (path, row["label"], group_of(row["dataset"], row["path"], row["source_video_or_original"], row["notes"]),
                   faces_mode(row["dataset"], row["path"]), ORIGINS[row["dataset"]])


out = csv.writer(sys.stdout)
out.writerow(["path", "label", "group", "faces", "origin"])
out.writerows(corpus1_rows(root))
for extra in sys.argv[2:]:
    out.writerows(corpus2_rows(os.path.abspath(extra)))
