"""Tasks built on the one train loop: pool-based active learning (``active_learning``)
and its acquisition functions (``acquisition``), k-shot evaluation of frozen features
(``few_shot``) and continual learning on class-split sequences (``continual``)."""
