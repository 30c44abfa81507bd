"""Tasks built on the one train loop: pool-based active learning (``active_learning``)
and its acquisition functions (``acquisition``)."""
