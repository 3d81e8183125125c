using MoeServe.Routing;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Inference.Model;

/// <summary>cos and signed sin of one step's positions, gathered once and shared by every layer.</summary>
/// <param name="Cos">[T, 1, headDim] compute dtype.</param>
/// <param name="SinSigned">[T, 1, headDim] compute dtype: (-sin, +sin) over the two halves.</param>
public sealed record RotaryTables(Tensor Cos, Tensor SinSigned) : IDisposable
{
    public void Dispose()
    {
        Cos.Dispose();
        SinSigned.Dispose();
    }
}

/// <summary>
/// Rotary position embeddings in the "rotate half" layout of Hugging Face Llama/Mixtral/OLMoE: the first
/// and second halves of each head form the (x, y) pairs. rotate_half(x) * sin equals
/// roll(x, d/2) * (-sin, +sin), which costs one roll instead of two slices, a negation and a concatenation.
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    private readonly Tensor _cos;       // [maxPositions, headDim] float32
    private readonly Tensor _sinSigned; // [maxPositions, headDim] float32

    public RotaryEmbedding(int headDim, int maxPositions, double theta, Device device)
    {
        using var scope = NewDisposeScope();
        // inv_freq = 1 / theta^(2i / d) for i in [0, d/2), as Hugging Face computes it (int64 arange to float).
        var invFreq = 1.0 / torch.pow(theta, torch.arange(0, headDim, 2, ScalarType.Int64).to(ScalarType.Float32) / headDim);
        var freqs = torch.outer(torch.arange(maxPositions, ScalarType.Float32), invFreq); // [P, d/2]
        _cos = torch.cat([freqs.cos(), freqs.cos()], dim: -1).to(device).MoveToOuterDisposeScope();
        _sinSigned = torch.cat([-freqs.sin(), freqs.sin()], dim: -1).to(device).MoveToOuterDisposeScope();
        HeadDim = headDim;
    }

    public int HeadDim { get; }

    /// <param name="positions">[T] int64 absolute positions.</param>
    /// <param name="dtype">The compute dtype (Hugging Face casts cos and sin to it).</param>
    public RotaryTables Tables(Tensor positions, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var cos = _cos.index_select(0, positions).unsqueeze(1);
        var sin = _sinSigned.index_select(0, positions).unsqueeze(1);
        if (dtype != ScalarType.Float32) { cos = cos.to(dtype); sin = sin.to(dtype); }
        return new RotaryTables(cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <param name="x">[T, heads, headDim] compute dtype.</param>
    /// <returns>[T, heads, headDim]: x * cos + rotate_half(x) * sin.</returns>
    public Tensor Apply(Tensor x, RotaryTables tables) =>
        torch.addcmul(x * tables.Cos, x.roll(HeadDim / 2, -1), tables.SinSigned, Scalars.One);

    public void Dispose()
    {
        _cos.Dispose();
        _sinSigned.Dispose();
    }
}
