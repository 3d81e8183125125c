using MoeServe.Routing;
using MoeServe.Inference.Parallel;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace MoeServe.Inference.Model;

/// <summary>
/// The SwiGLU experts of one MoE layer, stacked so they can run either one by one or as one grouped
/// matrix product. On CPU a small matrix product costs mostly its call: with small experts, many of them
/// active and near-even loads (batched decoding of a small model), one padded batched product over all
/// experts is faster than a product per expert; otherwise (larger experts, few active, uneven loads)
/// the per-expert loop is cheaper. Float16 weights on CPU are packed for FBGEMM's products instead (see
/// <see cref="HalfPackedGemm"/>), which take float32 rows; float32 weights that bfloat16 holds exactly run on
/// <see cref="Bf16SwiGluKernel"/> where the CPU has 512-bit vectors.
/// </summary>
/// <remarks>Legend: E experts, H hidden size, F expert FFN size, N token-expert pairs.</remarks>
public sealed class ExpertBank : IDisposable
{
    private readonly Tensor _gateUp; // [E, H, 2F]: w1 and w3 side by side, transposed for x @ W
    private readonly Tensor _down;   // [E, F, H]: w2 transposed
    private readonly long _ffn;
    private readonly long _hidden;
    // FBGEMM-packed experts (float16 weights on CPU); null otherwise. Then _gateUp and _down are empty.
    private readonly Tensor[]? _packedGateUp;   // [E] packed [2F, H]
    private readonly Tensor[]? _packedDown;     // [E] packed [H, F]
    private readonly Tensor? _gateUpBias;       // [2F] float32 zeros
    private readonly Tensor? _downBias;         // [H] float32 zeros
    // The managed kernel's experts (float32 CPU weights that bfloat16 holds exactly); null otherwise. Then _gateUp and _down are empty.
    private readonly Bf16SwiGluKernel[]? _managed;

    /// <param name="gateUp">Per expert [2F, H] (w1 rows, then w3 rows), as the checkpoint stores them.</param>
    /// <param name="down">Per expert [H, F] (w2).</param>
    public ExpertBank(IReadOnlyList<Tensor> gateUp, IReadOnlyList<Tensor> down)
    {
        using var scope = NewDisposeScope();
        Count = gateUp.Count;
        _ffn = down[0].shape[1];
        _hidden = down[0].shape[0];
        if (down[0].dtype == ScalarType.Float16 && down[0].device.type == DeviceType.CPU)
        {
            if (!HalfPackedGemm.Available)
                throw new ArgumentException("float16 experts on CPU need FBGEMM (an x86-64 libtorch on a CPU with AVX2)");
            if (gateUp.Concat(down).Any(w => w.isinf().any().item<bool>()))
                throw new ArgumentException("expert weights beyond float16's range (65504): run the experts in bfloat16 or float32 (Model:ExpertDtype)");
            _packedGateUp = gateUp.Select(w => HalfPackedGemm.Pack(w).MoveToOuterDisposeScope()).ToArray();
            _packedDown = down.Select(w => HalfPackedGemm.Pack(w).MoveToOuterDisposeScope()).ToArray();
            _gateUpBias = torch.zeros(2 * _ffn).MoveToOuterDisposeScope();
            _downBias = torch.zeros(_hidden).MoveToOuterDisposeScope();
            _gateUp = torch.empty(0).MoveToOuterDisposeScope();
            _down = torch.empty(0).MoveToOuterDisposeScope();
            return;
        }
        if (ManagedKernelRuns(gateUp, down))
        {
            _managed = gateUp.Zip(down).Select(pair => NewManagedExpert(pair.First, pair.Second)).ToArray();
            _gateUp = torch.empty(0).MoveToOuterDisposeScope();
            _down = torch.empty(0).MoveToOuterDisposeScope();
            return;
        }
        _gateUp = torch.stack(gateUp.Select(w => w.t()).ToArray()).contiguous().MoveToOuterDisposeScope();
        _down = torch.stack(down.Select(w => w.t()).ToArray()).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>Whether float32 experts run on <see cref="Bf16SwiGluKernel"/>: CPU weights that bfloat16 holds exactly (a
    /// bfloat16 checkpoint's), of sizes its tiles fit, on a CPU with 512-bit vectors.</summary>
    public static bool ManagedKernelRuns(IReadOnlyList<Tensor> gateUp, IReadOnlyList<Tensor> down) =>
        Bf16SwiGluKernel.Supported
        && down[0].dtype == ScalarType.Float32 && down[0].device.type == DeviceType.CPU
        && Bf16SwiGluKernel.Fits(down[0].shape[0], down[0].shape[1])
        && gateUp.Concat(down).All(HoldsInBfloat16);

    /// <param name="weight">Any shape, float32.</param>
    private static bool HoldsInBfloat16(Tensor weight)
    {
        using var scope = NewDisposeScope();
        return weight.to(ScalarType.BFloat16).to(ScalarType.Float32).eq(weight).all().item<bool>();
    }

    /// <param name="gateUp">[2F, H] float32 (w1 rows, then w3 rows), values bfloat16 holds.</param>
    /// <param name="down">[H, F] float32.</param>
    private static Bf16SwiGluKernel NewManagedExpert(Tensor gateUp, Tensor down)
    {
        using var scope = NewDisposeScope();
        int f = (int)down.shape[1], h = (int)down.shape[0];
        var gateUpBits = gateUp.to(ScalarType.BFloat16).ToHostArray<ushort>(); // bit patterns, row-major
        return new Bf16SwiGluKernel(gateUpBits.AsSpan(0, f * h), gateUpBits.AsSpan(f * h), down.to(ScalarType.BFloat16).ToHostArray<ushort>(), h, f);
    }

    public int Count { get; }

    /// <summary>Runs each expert on its rows.</summary>
    /// <param name="inputs">[N, H] rows sorted by expert: counts[0] rows for expert 0, then expert 1, ...; any float dtype.</param>
    /// <param name="counts">Rows per expert ([E]).</param>
    /// <param name="threads">Threads that share the experts (null: all on the caller).</param>
    /// <returns>[N, H] expert outputs, in the order and dtype of <paramref name="inputs"/>.</returns>
    public Tensor Run(Tensor inputs, long[] counts, WorkerThreads? threads = null)
    {
        if (_managed is not null && inputs.dtype != ScalarType.Float32) // the kernel takes float32 rows
        {
            using var widened = inputs.to(ScalarType.Float32);
            using var result = Run(widened, counts, threads);
            return result.to(inputs.dtype);
        }
        long n = inputs.size(0), maxRows = counts.Max();
        int active = counts.Count(c => c > 0);
        // One batched product saves calls, which only pays where a product costs mostly its call (small expert
        // matrices) and the padding is small (near-even loads). Measured on one core (microseconds, grouped vs
        // one by one): H 128 / F 256, 8 x 4 rows: 182 vs 264; uneven 32 rows [10,6,5,3,3,2,2,1]: 314 vs 267;
        // H 256 / F 512 (the shipped model), 8 x 4 rows: 1836 vs 1964; the uneven 32 rows: 2838 vs 1513 (the
        // padded batched product reads every expert's weights in small blocks and is memory-bound).
        bool smallMatrices = _hidden * _ffn <= 65_536 && _packedDown is null && _managed is null;
        bool grouped = smallMatrices && active * 2 >= Count && Count * maxRows * 4 <= 5 * n;
        if (grouped) return RunGrouped(inputs, counts, maxRows);
        return SharesAmongThreads(counts, threads) ? RunShared(inputs, counts, threads!) : RunOneByOne(inputs, counts);
    }

    /// <summary>Whether <see cref="Run"/> splits these experts among <paramref name="threads"/>: only when two or more have rows.</summary>
    public static bool SharesAmongThreads(long[] counts, WorkerThreads? threads) =>
        threads is { Count: > 1 } && counts.Count(c => c > 0) > 1;

    /// <summary>Expert e on its rows: SwiGLU, [n, H] -> [n, H], in the rows' dtype.</summary>
    /// <remarks>Weights of another dtype (bfloat16 experts in a float32 model) take the rows in their dtype and give
    /// the result back in the rows': the products, the activation and the gating all run in the weights' dtype,
    /// as a model trained with bfloat16 matrix products computed them.</remarks>
    private Tensor RunExpert(int e, Tensor rows)
    {
        var input = rows.dtype == _down.dtype ? rows : rows.to(_down.dtype);
        var gateUp = torch.matmul(input, _gateUp[e]);                                          // [n, 2F]
        var output = torch.matmul(F.silu(gateUp.narrow(1, 0, _ffn)).mul_(gateUp.narrow(1, _ffn, _ffn)), _down[e]); // [n, H]
        return output.dtype == rows.dtype ? output : output.to(rows.dtype);
    }

    private Tensor RunOneByOne(Tensor inputs, long[] counts)
    {
        if (_managed is not null)
        {
            var output = torch.empty_like(inputs); // [N, H]
            RunManaged(inputs, counts, FirstRows(counts), ExpertsWithRows(counts), output);
            return output;
        }
        if (_packedDown is not null) return RunPacked(inputs, counts, FirstRows(counts), ExpertsWithRows(counts));
        var outputs = new List<Tensor>(counts.Length);
        long offset = 0;
        for (int e = 0; e < counts.Length; e++)
        {
            if (counts[e] == 0) continue;
            outputs.Add(RunExpert(e, inputs.narrow(0, offset, counts[e])));
            offset += counts[e];
        }
        return outputs.Count == 1 ? outputs[0] : torch.cat(outputs, 0);
    }

    /// <summary>
    /// The experts shared among <paramref name="threads"/>: the busiest expert first to the least-loaded thread
    /// (longest-processing-time order, by rows), each writing its rows of one output tensor. Every expert runs
    /// exactly as in <see cref="RunOneByOne"/>, so the result is the same to the bit.
    /// </summary>
    private Tensor RunShared(Tensor inputs, long[] counts, WorkerThreads threads)
    {
        var offsets = FirstRows(counts);
        var groups = Enumerable.Range(0, threads.Count).Select(_ => new List<int>()).ToArray();
        var rows = new long[threads.Count];
        foreach (int e in ExpertsWithRows(counts).OrderByDescending(e => counts[e]))
        {
            int least = Array.IndexOf(rows, rows.Min());
            groups[least].Add(e);
            rows[least] += counts[e];
        }
        var output = torch.empty_like(inputs); // [N, H]
        threads.RunAll(groups.Select(group => group.Count == 0 ? null : (Action)(() =>
        {
            // Each thread frees its own temporaries; the shared input and output belong to the caller.
            using var scope = NewDisposeScope();
            if (_managed is not null)
            {
                RunManaged(inputs, counts, offsets, group, output); // each expert writes its own rows
                return;
            }
            if (_packedDown is not null)
            {
                // One call for the group; its rows are not contiguous in the input, so each expert's are copied back to its place.
                var result = RunPacked(inputs, counts, offsets, group);
                long at = 0;
                foreach (int e in group)
                {
                    output.narrow(0, offsets[e], counts[e]).copy_(result.narrow(0, at, counts[e]));
                    at += counts[e];
                }
                return;
            }
            foreach (int e in group)
                output.narrow(0, offsets[e], counts[e]).copy_(RunExpert(e, inputs.narrow(0, offsets[e], counts[e])));
        })).ToArray());
        return output;
    }

    /// <summary>The FBGEMM-packed <paramref name="experts"/> on their rows, in one call.</summary>
    /// <param name="inputs">[N, H] rows sorted by expert, any float dtype.</param>
    /// <param name="counts">[E] rows per expert.</param>
    /// <param name="offsets">[E] each expert's first row (<see cref="FirstRows"/>).</param>
    /// <param name="experts">The experts to run, each with rows.</param>
    /// <returns>[sum of their counts, H] in the order of <paramref name="experts"/>, the inputs' dtype.</returns>
    private Tensor RunPacked(Tensor inputs, long[] counts, long[] offsets, IReadOnlyList<int> experts)
    {
        var rows = inputs.dtype == ScalarType.Float32 ? inputs : inputs.to(ScalarType.Float32);
        var output = HalfPackedGemm.SwiGlu(
            experts.Select(e => rows.narrow(0, offsets[e], counts[e])).ToArray(),
            experts.Select(e => _packedGateUp![e]).ToArray(), experts.Select(e => _packedDown![e]).ToArray(),
            _gateUpBias!, _downBias!);
        return output.dtype == inputs.dtype ? output : output.to(inputs.dtype);
    }

    /// <summary>The managed kernel's <paramref name="experts"/> on their rows, each written to its rows of <paramref name="output"/>.</summary>
    /// <param name="inputs">[N, H] float32 rows sorted by expert.</param>
    /// <param name="output">[N, H] float32, contiguous; only the rows of <paramref name="experts"/> are written.</param>
    private unsafe void RunManaged(Tensor inputs, long[] counts, long[] offsets, IReadOnlyList<int> experts, Tensor output)
    {
        using var rows = inputs.contiguous();
        float[] scratch = System.Buffers.ArrayPool<float>.Shared.Rent(_managed![0].ScratchFloats + 16);
        try
        {
            fixed (byte* inBytes = rows.bytes)
            fixed (byte* outBytes = output.bytes)
            fixed (float* scratchBase = scratch)
            {
                foreach (int e in experts)
                    _managed[e].Run((float*)inBytes + offsets[e] * _hidden, (float*)outBytes + offsets[e] * _hidden, (int)counts[e], scratchBase);
            }
        }
        finally { System.Buffers.ArrayPool<float>.Shared.Return(scratch); }
    }

    /// <returns>The experts with at least one row, in index order.</returns>
    private static List<int> ExpertsWithRows(long[] counts) => Enumerable.Range(0, counts.Length).Where(e => counts[e] > 0).ToList();

    /// <returns>[E] the first row of each expert's run in rows sorted by expert.</returns>
    private static long[] FirstRows(long[] counts)
    {
        var first = new long[counts.Length];
        for (int e = 1; e < counts.Length; e++) first[e] = first[e - 1] + counts[e - 1];
        return first;
    }

    /// <summary>Pads every expert's rows to the largest count and runs two batched products.</summary>
    private Tensor RunGrouped(Tensor inputs, long[] counts, long maxRows)
    {
        // Row i of expert e goes to padded row e * maxRows + (i - first row of e).
        var destination = new long[inputs.size(0)];
        long row = 0;
        for (int e = 0; e < counts.Length; e++)
            for (long r = 0; r < counts[e]; r++) destination[row++] = e * maxRows + r;
        var slots = torch.tensor(destination, device: inputs.device);
        var padded = torch.zeros([Count * maxRows, inputs.size(1)], _down.dtype, inputs.device)
            .index_copy_(0, slots, inputs.to(_down.dtype)).view(Count, maxRows, -1);       // [E, maxRows, H], the weights' dtype
        var gateUp = torch.bmm(padded, _gateUp);                                           // [E, maxRows, 2F]
        var outputs = torch.bmm(F.silu(gateUp.narrow(2, 0, _ffn)).mul_(gateUp.narrow(2, _ffn, _ffn)), _down); // [E, maxRows, H]
        return outputs.view(Count * maxRows, -1).index_select(0, slots).to(inputs.dtype);  // [N, H], the inputs' dtype
    }

    public void Dispose()
    {
        _gateUp.Dispose();
        _down.Dispose();
        foreach (var packed in (_packedGateUp ?? []).Concat(_packedDown ?? [])) packed.Dispose();
        foreach (var kernel in _managed ?? []) kernel.Dispose();
        _gateUpBias?.Dispose();
        _downBias?.Dispose();
    }
}
