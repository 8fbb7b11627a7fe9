# Paired contrasts, head minus no head, per unseen style and pooled (benchmarks/paired_evaluations.py); from the
# repository root with the venv active.
D=benchmarks/results/disc_head_ab_2026-12-03
for s in lowdose thickslice lowdose,thickslice; do
  python benchmarks/paired_evaluations.py $(echo $s | sed "s|\([a-z]*\)|$D/eval_head_\1.json|g") \
    $(echo $s | sed "s|\([a-z]*\)|$D/eval_nohead_\1.json|g") --name-a "head ($s)" --name-b "no head"
done > $D/paired.txt
