"""AutoLR in a plain PyTorch loop: no lr to choose, no scheduler to pick; it searches, holds, decays, and keeps
a moving average of the weights that evaluation swaps in.

.venv/bin/python examples/autolr_loop.py [OUT_DIR]
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lrlab.data import DataLoaders
from lrlab.optim import Adam
from lrlab.tuning import AutoLR, KeepBest

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/autolr_loop")
out.mkdir(parents=True, exist_ok=True)

# tabular data: 20 features, 4 classes from a random two-layer teacher (as in plain_loop.py)
g = torch.Generator().manual_seed(0)
x = torch.randn(2048, 20, generator=g)
y = (torch.tanh(x @ torch.randn(20, 32, generator=g)) @ torch.randn(32, 4, generator=g)).argmax(1)
dls = DataLoaders.from_tensors(x[:1536], y[:1536], x[1536:], y[1536:], batch_size=64, seed=1)

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))
opt = Adam(model.parameters())  # no lr chosen: AutoLR's search starts at its own 1e-4, whatever this one says
epochs = 5
auto = AutoLR(opt, total_steps=epochs * len(dls.train), average=0.2)  # the run's length: search, hold, decay
keeper = KeepBest(model, higher_is_better=True)  # the best-validated weights, to hand over if the end is worse


def valid_accuracy() -> float:
    model.eval()
    with torch.no_grad():
        hits = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in dls.valid)
    model.train()
    return hits / 512


keeper.observe(valid_accuracy(), "start")  # the untrained model is a candidate too

for epoch in range(epochs):
    model.train()
    for xb, yb in dls.train:
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()
        auto.step(loss)
    auto.epoch_end()
    auto.use_average()  # evaluate at the weights' moving average (a no-op until the search has ended)
    accuracy = valid_accuracy()
    keeper.observe(accuracy, epoch)
    if epoch < epochs - 1:
        auto.use_live()  # and train on the live weights
    print(f"epoch {epoch + 1}: lr {auto.lr:.3g}, valid accuracy {accuracy:.4f}")

restored = keeper.restore(accuracy)  # None: the last weights are (within 1 point of) the best
found = next(e for e in auto.events if e["event"] == "search done")
print(f"AutoLR: searched from {auto.history['lr'][0]:g} for {found['step']} steps, found lr {found['lr']:.3g}; "
      f"{auto.restores} restores; best-validated weights {'restored' if restored else 'were the last'}")  # fmt: skip
auto.plot(out / "autolr.png")
print(f"plot in {out}/autolr.png")
