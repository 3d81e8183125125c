using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Inference.Model;

/// <summary>
/// Matrix products on CPU through FBGEMM's float16 products (SwiGLU experts, and projections whose weights float16
/// holds without loss): each weight matrix is packed once, at load, into FBGEMM's blocked float16 layout, and
/// every product reads it in that layout, widens it to float32 in registers, and multiplies float32 rows. So the
/// products are float32 arithmetic on float16 weights, and the weights cost half the memory traffic of float32
/// with no repacking per call.
/// </summary>
/// <remarks>
/// <para>Why: with a few rows per expert (batched decoding), a CPU product costs mostly reading its weights.
/// libtorch's float32 and bfloat16 products re-pack the weight matrix on every call; FBGEMM's packed product
/// does not. Measured on one core (8 experts of H 256, F 512, weights in cache), microseconds for the 8:
/// 1 row each 600 (bfloat16 products) / 445 (float32) / 190 (this); 2 rows 630 / 670 / 256; 4 rows 750 / 1130 / 378;
/// 8 rows 840 / 1190 / 614.</para>
/// <para>libtorch exposes these products as <c>aten::fbgemm_pack_gemm_matrix_fp16</c> and
/// <c>aten::fbgemm_linear_fp16_weight_fp32_activation</c>, which TorchSharp does not bind; a TorchScript
/// function compiled once calls them, and runs a whole set of experts in one call from .NET. libtorch marks both
/// deprecated. A build without FBGEMM (not x86-64) or a CPU without AVX2 makes them throw, so
/// <see cref="Available"/> is false there and Model:ExpertDtype=auto falls back to bfloat16 or float32 experts.
/// A libtorch that no longer has them fails differently: TorchScript's "unknown builtin op" error while compiling
/// ends the process instead of reaching .NET (tried), so a libtorch upgrade must run the tests, whose first use of
/// this class then stops with that message.</para>
/// <para>A projection's product is faster too: measured on one core, the output layer [4096, 256] at 1 / 8 / 16
/// rows 47 / 169 / 333 µs against 67 / 327 / 491 µs for libtorch's float32 product; qkv [512, 256] at 8 rows
/// 23 against 36 µs.</para>
/// </remarks>
public static class HalfPackedGemm
{
    private const string Script = """
        def pack(weight: Tensor):
            return torch.fbgemm_pack_gemm_matrix_fp16(weight)

        def linear(rows: Tensor, weight: Tensor, bias: Tensor):
            return torch.fbgemm_linear_fp16_weight_fp32_activation(rows, weight, bias)

        def swiglu(rows: List[Tensor], gate_up: List[Tensor], down: List[Tensor], gate_up_bias: Tensor, down_bias: Tensor):
            ffn = gate_up_bias.size(0) // 2
            outputs: List[Tensor] = []
            for e in range(len(rows)):
                h = torch.fbgemm_linear_fp16_weight_fp32_activation(rows[e], gate_up[e], gate_up_bias)
                outputs.append(torch.fbgemm_linear_fp16_weight_fp32_activation(torch.silu(h.narrow(1, 0, ffn)).mul_(h.narrow(1, ffn, ffn)), down[e], down_bias))
            return torch.cat(outputs, 0)
        """;

    // TorchScript wants the source to end with a newline, which a raw string literal drops.
    private static readonly Lazy<torch.jit.CompilationUnit> Unit = new(() => torch.jit.compile(Script + "\n"));

    // Packs and runs a one-element expert: that both ops run here and compute SwiGLU, and their one-time deprecation warnings
    // (libtorch prints each once per process, to stderr) are spent with stderr silenced, so they do not read as
    // a fault in the server's output, nor add a line to a startup error.
    private static readonly Lazy<bool> Probe = new(() =>
    {
        try
        {
            using var scope = NewDisposeScope();
            return NativeStderr.Silenced(() =>
            {
                // One expert with H = 1, F = 1: gate-up [2, 1], down [1, 1].
                var gateUp = (Tensor)Unit.Value.invoke("pack", torch.ones(2, 1));
                var down = (Tensor)Unit.Value.invoke("pack", torch.ones(1, 1));
                var product = SwiGlu([torch.ones(1, 1)], [gateUp], [down], torch.zeros(2), torch.zeros(1));
                return Math.Abs(product.item<float>() - 0.7310586f) < 1e-3f; // silu(1) x 1, through 1 x 1 weights of 1
            });
        }
        catch (Exception) { return false; } // libtorch without FBGEMM, or a CPU without AVX2: the op throws
    });

    /// <summary>Whether this libtorch and CPU run FBGEMM's products (x86-64 builds on CPUs with AVX2 do).</summary>
    public static bool Available => Probe.Value;

    /// <summary>Packs one weight matrix for <see cref="SwiGlu"/>.</summary>
    /// <param name="weight">[out, in] float16 (values that float16 holds exactly stay exact), CPU.</param>
    /// <returns>FBGEMM's packed matrix, an opaque CPU tensor that owns it.</returns>
    public static Tensor Pack(Tensor weight)
    {
        if (weight.dim() != 2) throw new ArgumentException($"a weight to pack is [out, in], got [{string.Join(", ", weight.shape)}]");
        using var widened = weight.to(ScalarType.Float32); // FBGEMM packs from float32, rounding to float16 (exact for float16 values)
        return (Tensor)Unit.Value.invoke("pack", widened.contiguous());
    }

    /// <summary>Largest change float16 may make to a weight for <see cref="HoldsLosslessly"/>: half the spacing of
    /// float16's subnormals (2^-25, 3e-8), which is all a bfloat16 value under float16's normal range (6.1e-5) moves.</summary>
    public const double SubnormalRounding = 1.0 / (1 << 25);

    /// <summary>Whether float16 holds <paramref name="weight"/> without loss: every value exactly, except values
    /// under float16's normal range, which may move by up to <see cref="SubnormalRounding"/> (float32 rounding of
    /// the products is larger). True of every weight a bfloat16 or float16 checkpoint stores, short of overflow.</summary>
    /// <param name="weight">Any shape, float32 (or another float dtype).</param>
    public static bool HoldsLosslessly(Tensor weight)
    {
        using var scope = NewDisposeScope();
        var change = weight.to(ScalarType.Float16).to(ScalarType.Float64).sub(weight.to(ScalarType.Float64)).abs();
        return change.le(SubnormalRounding).all().item<bool>(); // an overflow to infinity fails too
    }

    /// <summary>rows x weightᵀ + bias.</summary>
    /// <param name="rows">[n, in] float32.</param>
    /// <param name="weight">[out, in] packed by <see cref="Pack"/>.</param>
    /// <param name="bias">[out] float32 (zeros for a bias-free layer).</param>
    /// <returns>[n, out] float32.</returns>
    public static Tensor Linear(Tensor rows, Tensor weight, Tensor bias) => (Tensor)Unit.Value.invoke("linear", rows, weight, bias);

    /// <summary>Runs expert i of <paramref name="gateUp"/>/<paramref name="down"/> on <paramref name="rows"/>[i].</summary>
    /// <param name="rows">Per expert [n_i, H] float32 (n_i ≥ 1).</param>
    /// <param name="gateUp">Per expert packed [2F, H] (w1 rows, then w3 rows).</param>
    /// <param name="down">Per expert packed [H, F].</param>
    /// <param name="gateUpBias">[2F] float32 zeros (FBGEMM's product takes a bias; its length gives F).</param>
    /// <param name="downBias">[H] float32 zeros.</param>
    /// <returns>[sum n_i, H] float32, the experts' outputs in the order of <paramref name="rows"/>.</returns>
    /// <remarks>Only tensors cross into the script: TorchSharp passes a number as a temporary Scalar, which the
    /// garbage collector could finalize during the call (seen as sporadic "toLong" failures under two step threads).</remarks>
    public static Tensor SwiGlu(Tensor[] rows, Tensor[] gateUp, Tensor[] down, Tensor gateUpBias, Tensor downBias) =>
        (Tensor)Unit.Value.invoke("swiglu", rows, gateUp, down, gateUpBias, downBias);
}
