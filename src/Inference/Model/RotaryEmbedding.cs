using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Inference.Model;

/// <summary>
/// Rotary position embeddings in the "rotate half" layout of Hugging Face Llama/Mixtral/OLMoE:
/// the first and second halves of each head form the (x, y) pairs.
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    private readonly Tensor _cos; // [maxPositions, headDim] float32
    private readonly Tensor _sin; // [maxPositions, headDim] float32

    public RotaryEmbedding(int headDim, int maxPositions, double theta, Device device)
    {
        using var scope = NewDisposeScope();
        // inv_freq = 1 / theta^(2i / d) for i in [0, d/2), computed in float64 then cast like HF's float arange.
        var invFreq = 1.0 / torch.pow(theta, torch.arange(0, headDim, 2, ScalarType.Int64).to(ScalarType.Float32) / headDim);
        var positions = torch.arange(maxPositions, ScalarType.Float32);
        var freqs = torch.outer(positions, invFreq);        // [P, d/2]
        var emb = torch.cat([freqs, freqs], dim: -1);       // [P, d]
        _cos = emb.cos().to(device).MoveToOuterDisposeScope();
        _sin = emb.sin().to(device).MoveToOuterDisposeScope();
        MaxPositions = maxPositions;
    }

    public int MaxPositions { get; }

    /// <summary>Applies the rotation for each row's position.</summary>
    /// <param name="x">[T, heads, headDim] compute dtype.</param>
    /// <param name="positions">[T] int64 absolute positions.</param>
    /// <returns>[T, heads, headDim] in the dtype of <paramref name="x"/>.</returns>
    public Tensor Apply(Tensor x, Tensor positions)
    {
        using var scope = NewDisposeScope();
        var cos = _cos.index_select(0, positions).unsqueeze(1); // [T, 1, d]
        var sin = _sin.index_select(0, positions).unsqueeze(1);
        var x32 = x.to(ScalarType.Float32);
        long half = x.shape[^1] / 2;
        var rotated = torch.cat([-x32.narrow(-1, half, half), x32.narrow(-1, 0, half)], dim: -1);
        return (x32 * cos + rotated * sin).to(x.dtype).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        _cos.Dispose();
        _sin.Dispose();
    }
}
