using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Training.Model;

/// <summary>cos and signed sin for positions 0..L-1, built once per forward pass and shared by every layer.</summary>
/// <param name="Cos">[L, headDim] float32.</param>
/// <param name="SinSigned">[L, headDim] float32: (-sin, +sin) over the two halves of each head.</param>
public sealed record RotaryTables(Tensor Cos, Tensor SinSigned);

/// <summary>
/// Rotary position embeddings in the Hugging Face Llama/Mixtral "rotate half" layout, the same maths as
/// the inference model: x * cos + rotate_half(x) * sin, where rotate_half(x) * sin = roll(x, d/2) * (-sin, +sin).
/// Holds no tensors (nothing to register or save).
/// </summary>
public static class RotaryEmbedding
{
    /// <summary>Tables for positions 0..<paramref name="length"/>-1.</summary>
    public static RotaryTables Tables(long length, int headDim, double theta, Device device)
    {
        using var scope = NewDisposeScope();
        // inv_freq = 1 / theta^(2i / d) for i in [0, d/2), computed as Hugging Face does (int64 arange to float).
        var invFreq = 1.0 / torch.pow(theta, torch.arange(0, headDim, 2, ScalarType.Int64).to(ScalarType.Float32) / headDim);
        var freqs = torch.outer(torch.arange(length, ScalarType.Float32), invFreq); // [L, d/2]
        var cos = torch.cat([freqs.cos(), freqs.cos()], dim: -1).to(device);       // [L, d]
        var sin = torch.cat([-freqs.sin(), freqs.sin()], dim: -1).to(device);      // [L, d]
        return new RotaryTables(cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <param name="x">[B, heads, L, headDim].</param>
    /// <returns>[B, heads, L, headDim] rotated.</returns>
    public static Tensor Apply(Tensor x, RotaryTables tables)
    {
        long d = x.shape[^1];
        return torch.addcmul(x * tables.Cos, x.roll(d / 2, -1), tables.SinSigned, 1.0);
    }
}
