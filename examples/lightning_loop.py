"""lrlab's tools in Lightning: lrlab's Adam, torch's OneCycleLR, the recorder; then the annealer.

pip install 'lrlab[lightning]' -c constraints.txt
.venv/bin/python examples/lightning_loop.py [OUT_DIR]
"""

import logging
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from lrlab.lightning import AutoAnnealCallback, HyperRecorderCallback, lr_find_module
from lrlab.optim import Adam

warnings.filterwarnings("ignore", ".*(does not have many workers|LeafSpec).*")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # Lightning's banners, not our output
out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/lightning_loop")
g = torch.Generator().manual_seed(0)
x = torch.randn(2048, 20, generator=g)
y = (torch.tanh(x @ torch.randn(20, 32, generator=g)) @ torch.randn(32, 4, generator=g)).argmax(1)
train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:1536], y[:1536]), batch_size=64, shuffle=True)
valid = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[1536:], y[1536:]), batch_size=256)


class Classifier(pl.LightningModule):
    def __init__(self, lr: float, one_cycle_steps: int | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))
        self.lr, self.one_cycle_steps = lr, one_cycle_steps

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val_acc", (self.net(batch[0]).argmax(1) == batch[1]).float().mean())

    def configure_optimizers(self):
        opt = Adam(self.parameters(), lr=self.lr)
        if self.one_cycle_steps is None:
            return opt
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=self.one_cycle_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def fit(module, callbacks, epochs=5):
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=out, callbacks=callbacks)  # fmt: skip
    trainer.fit(module, train, valid)
    return float(trainer.callback_metrics["val_acc"])


torch.manual_seed(0)
suggestion = lr_find_module(Classifier(1e-3), train).suggestion
print(f"lr_find_module: suggestion {suggestion:.3g}")

torch.manual_seed(0)
recorder = HyperRecorderCallback()
accuracy = fit(Classifier(suggestion, one_cycle_steps=5 * len(train)), [recorder])
lrs = recorder.recorder["lr"]
print(f"one-cycle: valid accuracy {accuracy:.4f}; lr recorded at {len(lrs)} steps, peak {max(lrs):.3g}")
recorder.recorder.plot(out / "one_cycle_hyperparams.png")

torch.manual_seed(0)
anneal = AutoAnnealCallback(every=8)
accuracy = fit(Classifier(suggestion), [anneal])
fired = [d["step"] for d in anneal.annealer.decisions if d["new_lr"] < d["old_lr"]]
print(f"annealer: valid accuracy {accuracy:.4f}; lr divided at steps {fired}")
