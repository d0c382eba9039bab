"""lrlab's tools in a plain PyTorch loop: no Learner, data from tensors, any model.

.venv/bin/python examples/plain_loop.py [OUT_DIR]
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lrlab import lr_find
from lrlab.data import DataLoaders
from lrlab.optim import Adam
from lrlab.schedules import HyperRecorder
from lrlab.tuning import AutoAnneal

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/plain_loop")
out.mkdir(parents=True, exist_ok=True)

# tabular data: 20 features, 4 classes from a random two-layer teacher
g = torch.Generator().manual_seed(0)
x = torch.randn(2048, 20, generator=g)
y = (torch.tanh(x @ torch.randn(20, 32, generator=g)) @ torch.randn(32, 4, generator=g)).argmax(1)
dls = DataLoaders.from_tensors(x[:1536], y[:1536], x[1536:], y[1536:], batch_size=64, seed=1)

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))
opt = Adam(model.parameters(), lr=1e-3)

found = lr_find(model, F.cross_entropy, dls.train, opt)  # model and optimizer come back untouched
found.plot(out / "lr_find.png")
print(f"lr_find: suggestion {found.suggestion:.3g} (steepest {found.steepest:.3g}, valley {found.valley:.3g})")

for group in opt.param_groups:
    group["lr"] = found.suggestion
annealer = AutoAnneal(opt, every=8, warmup=len(dls.train))  # torch's scheduler shape: step() after each step
recorder = HyperRecorder(opt)  # records what each step applied, through the optimizer's hooks

for epoch in range(5):
    model.train()
    for xb, yb in dls.train:
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()
        annealer.step(loss)
    annealer.epoch_end()
    model.eval()
    with torch.no_grad():
        hits = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in dls.valid)
    print(f"epoch {epoch + 1}: lr {opt.param_groups[0]['lr']:.3g}, valid accuracy {hits / 512:.4f}")

fired = [d for d in annealer.decisions if d["new_lr"] < d["old_lr"]]
print(f"annealer: {len(annealer.decisions)} checks, lr divided at steps {[d['step'] for d in fired]}")
recorder.plot(out / "hyperparams.png")
print(f"recorded {len(recorder['lr'])} steps; plots in {out}/")
