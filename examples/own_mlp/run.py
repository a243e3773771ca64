"""The same run through the Python API: register the factories, build, run, sweep.

cd examples/own_mlp && python run.py
"""

from __future__ import annotations

from own_mlp import blobs, mlp

import qfl

qfl.register_dataset("blobs", blobs)
qfl.register_model("mlp", mlp)
sc = qfl.load_scenario(
    "metro.yaml", {"learning.dataset": "blobs", "learning.model": "mlp", "learning.rounds": 5}
)
res = qfl.run(sc)
s = res.summary
print(
    f"global accuracy {s['final_global_acc']:.3f} after {s['rounds_done']} rounds, "
    f"{s['sim_time_end_s']:.1f} s simulated; engine: {s['engine']['engine']} "
    f"({s['engine']['reason']})"
)
rows = qfl.sweep(sc, {"qkd.rate_scale": [0.01, 0.1, 1.0]}, "runs/own-mlp-sweep", plots=False)
for r in rows:  # one learning run serves the three points where the timelines allow it
    print(
        f"rate_scale {r['qkd.rate_scale']}: {r['status']}, accuracy {r['final_global_acc']:.3f}"
        f" after {r['sim_time_end_s']:.1f} s simulated (learning {r['learning_group']})"
    )
