"""Save one small family per method with slimkit as of commit e98ec1a (before the method packages), plus
each variant's output on a fixed input, for tests/test_compat.py.

Made once, with that commit's code on the import path: ``python make.py tests/data/families_v0``. Kept for
the record; running it with today's slimkit would write families in the current layout instead.
"""
import json
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from slimkit import compress
from slimkit.compress import data, fit, zoo

torch.set_num_threads(1)
out = Path(sys.argv[1])
wine = data.sklearn_dataset("wine")
x_wine = next(iter(wine.val))[0][:4]

def save(name, fam, x):
    d = out / name
    fam.save(d)
    with torch.no_grad():
        ref = {v.name: v.model(x).tolist() for v in fam}
    (d / "expected.json").write_text(json.dumps({"input": x.tolist(), "outputs": ref}))

torch.manual_seed(0)
mlp = zoo.build("mlp", in_features=13, num_classes=3, hidden=[32, 32])
fit(mlp, wine.train, epochs=3, progress=False)
save("sortednet", compress.sortednet(mlp, train=wine.train, val=wine.val, widths=(0.5, 1.0), epochs=1, progress=False), x_wine)
save("n2n", compress.n2n(mlp, train=wine.train, val=wine.val, budget={"params": 0.6}, iterations=1, rollouts=2, epochs=0, final_epochs=1, progress=False), x_wine)
save("snnk", compress.snnk(mlp, train=wine.train, val=wine.val, features=(8, 16), mode="closed_form", progress=False), x_wine)
save("boost", compress.boost(mlp, train=wine.train, val=wine.val, stages=3, units=4, progress=False), x_wine)
g = torch.Generator().manual_seed(0)
xs, ys = torch.randn(96, 10, 4, generator=g), torch.randint(0, 3, (96,), generator=g)
seq = DataLoader(TensorDataset(xs, ys), batch_size=16)
gru = zoo.build("gru", in_features=4, hidden_size=8, num_classes=3)
save("sparse_rnn", compress.sparse_rnn(gru, train=seq, val=seq, sparsities=(0.5,), epochs=1, progress=False), xs[:3])
save("sparse_rnn_structured", compress.sparse_rnn(gru, train=seq, val=seq, sparsities=(0.5,), structured=True, epochs=1, progress=False), xs[:3])
print("ok")
