using MoeServe.Inference.Model;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MoeServe.Unit.Tests;

/// <summary>
/// Float16 experts on CPU (FBGEMM's packed products, float32 rows) against an independent float64 computation of
/// the same SwiGLU on the same float16 weight values: the products are float32 arithmetic, so they agree to float32
/// rounding, not to float16's.
/// </summary>
public class HalfPackedGemmTests(ITestOutputHelper output)
{
    private const long Hidden = 256, Ffn = 512; // the shipped model's expert shape

    /// <summary>SwiGLU in float64: [n, H] -> [n, H].</summary>
    private static Tensor Reference(Tensor rows, Tensor gateUp, Tensor down)
    {
        var h = rows.to(ScalarType.Float64).matmul(gateUp.to(ScalarType.Float64).t()); // [n, 2F]
        var a = h.narrow(1, 0, Ffn);
        var b = h.narrow(1, Ffn, Ffn);
        return (a * torch.sigmoid(a) * b).matmul(down.to(ScalarType.Float64).t());   // [n, H]
    }

    [Fact]
    public void Packed_experts_match_a_float64_swiglu_on_the_same_weights()
    {
        using var inference = torch.inference_mode();
        using var scope = NewDisposeScope();
        var generator = new Generator(11);
        long[] counts = [3, 0, 1, 5, 2, 0, 8, 1]; // idle experts, one row, several rows
        var gateUp = counts.Select(_ => torch.randn([2 * Ffn, Hidden], generator: generator).div(16).to(ScalarType.Float16)).ToList();
        var down = counts.Select(_ => torch.randn([Hidden, Ffn], generator: generator).div(22).to(ScalarType.Float16)).ToList();
        var inputs = torch.randn([counts.Sum(), Hidden], generator: generator);
        using var bank = new ExpertBank(gateUp, down);

        var actual = bank.Run(inputs, counts);
        Assert.Equal(ScalarType.Float32, actual.dtype);
        Assert.Equal([counts.Sum(), Hidden], actual.shape);
        long offset = 0;
        double worst = 0;
        for (int e = 0; e < counts.Length; e++)
        {
            if (counts[e] == 0) continue;
            var expected = Reference(inputs.narrow(0, offset, counts[e]), gateUp[e], down[e]);
            var got = actual.narrow(0, offset, counts[e]).to(ScalarType.Float64);
            // Relative to the output's scale, not per element: an element near zero is a sum that cancelled.
            worst = Math.Max(worst, ((got - expected).abs().max() / expected.abs().max()).item<double>());
            offset += counts[e];
        }
        output.WriteLine($"largest difference from float64, relative to the largest output: {worst:E2}");
        // float32 sums over 256 and 512 terms: about 1e-6 of the scale; float16 or bfloat16 rounding of the rows
        // would be 1e-3 to 1e-2.
        Assert.True(worst < 2e-5, $"relative difference {worst:E2}");
    }

    [Fact]
    public void A_row_gets_the_same_output_alone_and_among_others()
    {
        // What batching independence of the served outputs rests on: FBGEMM's product of a row does not depend
        // on how many rows share the call.
        using var inference = torch.inference_mode();
        using var scope = NewDisposeScope();
        var generator = new Generator(12);
        using var bank = new ExpertBank([torch.randn([2 * Ffn, Hidden], generator: generator).div(16).to(ScalarType.Float16)],
            [torch.randn([Hidden, Ffn], generator: generator).div(22).to(ScalarType.Float16)]);
        var rows = torch.randn([13, Hidden], generator: generator);
        var together = bank.Run(rows, [13]);
        for (int r = 0; r < 13; r++)
        {
            var alone = bank.Run(rows.narrow(0, r, 1), [1]);
            Assert.True(alone.equal(together.narrow(0, r, 1)).all().item<bool>(),
                $"row {r}: largest difference {(alone - together.narrow(0, r, 1)).abs().max().item<float>():E2}");
        }
    }

    [Fact]
    public void Weights_beyond_float16_range_are_refused()
    {
        using var scope = NewDisposeScope();
        var gateUp = torch.zeros([2 * Ffn, Hidden]);
        gateUp[0, 0] = torch.tensor(70000f); // a bfloat16 checkpoint can hold it; float16 cannot
        var message = Assert.Throws<ArgumentException>(() =>
            new ExpertBank([gateUp.to(ScalarType.Float16)], [torch.zeros([Hidden, Ffn], ScalarType.Float16)])).Message;
        Assert.Contains("float16", message);
    }
}
