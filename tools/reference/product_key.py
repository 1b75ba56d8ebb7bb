"""Product-key memory from facebookresearch/XLM's PKM-layer.ipynb (the standalone HashingMemory
the paper's authors published): its code cells are run as they are, then the memory is read in
float64 on fixed inputs, in evaluation mode (no dropout; the query batch norm at its initial
running statistics)."""
import json
import os
import types

import torch

REPO = "facebookresearch/XLM"
FILE = "PKM-layer.ipynb"


def _load(src):
    with open(os.path.join(src, FILE)) as f:
        cells = [c for c in json.load(f)["cells"] if c["cell_type"] == "code"]
    namespace = {}
    # The imports, get_uniform_keys and HashingMemory; the later cells train a toy model.
    for cell in cells:
        code = "".join(cell["source"])
        exec(compile(code, FILE, "exec"), namespace)
        if "class HashingMemory" in code:
            return namespace
    raise RuntimeError(f"no HashingMemory cell in {FILE}")


def fixture(src, repo_at_commit):
    ns = _load(src)
    params = types.SimpleNamespace(k_dim=6, heads=3, knn=5, n_keys=9, input_dropout=0.0, query_dropout=0.0,
                                   value_dropout=0.0, sparse=False, query_batchnorm=True)
    torch.manual_seed(0)
    memory = ns["HashingMemory"](8, 4, params).double().eval()
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    with torch.no_grad():
        query = memory.query_proj(x.view(-1, 8))  # (14, heads·k_dim)
        scores, indices = memory.get_indices(query.view(-1, params.k_dim))  # (14·heads, knn)
        y = memory(x)  # (2, 7, v_dim): the heads' reads summed
    tensors = {
        "x": x,
        "query": query.view(14, params.heads, params.k_dim),
        "keys": memory.keys,
        "values": memory.values.weight,
        "scores": scores.view(14, params.heads, params.knn),
        "indices": indices.view(14, params.heads, params.knn),
        "y": y,
    }
    return f"{repo_at_commit} {FILE}", tensors
