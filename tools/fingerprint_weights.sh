#!/usr/bin/env bash
# Fingerprint the weights of every training path, to show that a refactoring changes nothing:
# CLI train (RoCL, SimCLR), CLI probe (LE with and without augmentation, r-LE with robust
# selection), fine-tuning (AT, TRADES, AT+SS with validation selection, AT from scratch).
# Prints the SHA-256 of the 19 weight files; run it before and after a change and diff the two.
# usage: tools/fingerprint_weights.sh OUT_DIR   (from the repository root, the package installed;
# about 20 s on 2 CPU cores). Bit-identical only on the same machine and torch build.
set -euo pipefail
OUT=${1:?usage: tools/fingerprint_weights.sh OUT_DIR}
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then
  echo "fingerprint_weights.sh: $OUT is not empty: give a new folder" >&2; exit 2
fi
mkdir -p "$OUT"
export CUDA_VISIBLE_DEVICES=""
RC=robust-contrastive
common="--data sample --max-per-class 24 --width 8 --batch-size 32 --seed 0 --device cpu --no-progress --image-size 32"
$RC train $common --val-per-class 4 --epochs 2 --out "$OUT/rocl" --attack-steps 2 >/dev/null 2>&1
$RC train $common --val-per-class 4 --epochs 2 --out "$OUT/simclr" --simclr >/dev/null 2>&1
$RC probe --encoder "$OUT/rocl" --data sample --max-per-class 24 --split "$OUT/rocl/split.json" --out "$OUT/le" --val-per-class 2 --epochs 3 --batch-size 64 --no-progress >/dev/null 2>&1
$RC probe --encoder "$OUT/rocl" --data sample --max-per-class 24 --split "$OUT/rocl/split.json" --out "$OUT/le-fast" --epochs 3 --batch-size 64 --no-augment --no-progress >/dev/null 2>&1
$RC probe --encoder "$OUT/rocl" --data sample --max-per-class 24 --split "$OUT/rocl/split.json" --out "$OUT/rle" --val-per-class 2 --epochs 2 --batch-size 64 --adversarial --select robust --no-progress >/dev/null 2>&1
python - "$OUT" <<'PY' >/dev/null 2>&1
import sys
from pathlib import Path
import robust_contrastive as rc
from robust_contrastive import FinetuneConfig, ProjectionHead, RoCLEncoder, finetune
from robust_contrastive.data import load_sample
out = Path(sys.argv[1])
data = load_sample().stratified(12, seed=0)
val = load_sample(held_out=True).stratified(3, seed=0)
enc = RoCLEncoder.from_pretrained(out / "rocl")
proj = ProjectionHead.from_pretrained(out / "rocl" / "projector")
for method in ("at", "trades", "at+ss"):
    cfg = FinetuneConfig(method=method, epochs=2, batch_size=32, attack_steps=2, ss_attack_steps=2,
                         val_attack_steps=2, lr=0.01, device="cpu", progress=False, checkpoint_every=1)
    finetune(enc, data, cfg, projector=proj if method == "at+ss" else None, val=val,
             out_dir=out / f"ft-{method.replace('+', '')}")
cfg = FinetuneConfig(method="at", epochs=1, batch_size=32, attack_steps=2, lr=0.01, device="cpu", progress=False)
finetune(None, data, cfg, width=8, out_dir=out / "ft-scratch")
PY
cd "$OUT" && find . -name '*.safetensors' | sort | xargs sha256sum
