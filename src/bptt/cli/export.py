"""bptt export: a trained run's model for other runtimes: ONNX (ONNX Runtime and the others) or
PyTorch (safetensors in nn.Embedding + nn.RNN/GRU/LSTM + nn.Linear's names)."""

from .options import add_run_dir, parser_for

FORMATS = ("onnx", "torch")
DTYPES = ("float32", "float64")


def add_export(sub):
    p = parser_for(sub, "export", "write a trained model as ONNX or as PyTorch safetensors",
                   "Write the best checkpoint of a run (--checkpoint last: the latest) for another runtime. onnx: "
                   "an ONNX model with ONNX's own RNN/GRU/LSTM operators; inputs x (T, B) token ids, h0 (L, B, H) "
                   "(and c0 for an LSTM), outputs logits (T, B, K), h_n (and c_n); T and B dynamic; float32 unless "
                   "--dtype float64 (needs the onnx package: pip install 'bptt[onnx]'). torch: safetensors under "
                   "PyTorch's names, for model.load_state_dict(safetensors.torch.load_file(FILE)) on a module with "
                   "embedding = nn.Embedding(V, E), rnn = nn.RNN/GRU/LSTM(D, H, num_layers=L), head = nn.Linear(H, "
                   "K), in the run's dtype unless --dtype. The file must be new.")
    add_run_dir(p)
    p.add_argument("--format", required=True, choices=FORMATS, help="onnx or torch")
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write (a new one)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="best: the weights with the best validation loss; last: the latest checkpoint (default: best)")
    p.add_argument("--dtype", choices=DTYPES,
                   help="the float type written (default: float32 for onnx, the run's own for torch); ONNX Runtime "
                        "runs its RNN/GRU/LSTM operators in float32 only, a float64 graph is for runtimes that run "
                        "double")


def written_dtype(fmt, asked, net):
    """The dtype of the file: --dtype, else float32 for ONNX (what ONNX Runtime runs) and the
    network's own for PyTorch safetensors."""
    if asked is not None:
        return asked
    return "float32" if fmt == "onnx" else net.dtype.name


def run_export(args):
    from .. import files
    from ..training import opening

    out = files.check_new(args.out, name="--out", asked=" (give a new file)")
    net, meta = opening.Run(args.run).network(args.checkpoint)
    dtype = written_dtype(args.format, args.dtype, net)
    if args.format == "onnx":
        net.to_onnx(out, dtype=dtype)                           # written as a new file, never over one
    else:
        from safetensors.numpy import save

        tensors = {name: a.astype(dtype) for name, a in net.torch_state_dict().items()}    # tied: E twice, copied
        note = {"bptt": f"exported from {args.run}, step {meta['step']}"}
        files.write_bytes_atomic(out, save(tensors, metadata=note),
                                 replace=False)
    print(f"written: {out} ({args.format}, {dtype}, the {args.checkpoint} checkpoint, step {meta['step']})")
    return 0
