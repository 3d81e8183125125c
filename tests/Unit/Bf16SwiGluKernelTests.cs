using MoeServe.Inference.Model;
using MoeServe.Routing;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MoeServe.Unit.Tests;

/// <summary>
/// The managed SwiGLU kernel (float32 arithmetic on bfloat16-held weights) against an independent float64 SwiGLU on the
/// same weight values, for every row count its blocks of 8, 4, 2 and 1 rows produce; a row's bits alone and among
/// others; and the expert bank's choice of it.
/// </summary>
/// <remarks>Where the CPU lacks 512-bit vectors .NET runs the same vector code in software, so these tests check the
/// arithmetic everywhere (slowly there); the server only picks the kernel where <see cref="Bf16SwiGluKernel.Supported"/>.</remarks>
public class Bf16SwiGluKernelTests(ITestOutputHelper output)
{
    private const int Hidden = 128, Ffn = 96; // two down tiles of 64 hidden units, three gate tiles of 32 FFN units

    /// <summary>Weights that bfloat16 holds exactly, as float32.</summary>
    private static Tensor Bfloat16Valued(long[] shape, Generator generator, double scale) =>
        torch.randn(shape, generator: generator).mul(scale).to(ScalarType.BFloat16).to(ScalarType.Float32);

    private static ushort[] Bits(Tensor weight)
    {
        using var bits = weight.to(ScalarType.BFloat16);
        return bits.ToHostArray<ushort>();
    }

    /// <summary>SwiGLU in float64: [n, H] -> [n, H], with libtorch's float64 SiLU.</summary>
    private static Tensor Reference(Tensor rows, Tensor gate, Tensor up, Tensor down)
    {
        var x = rows.to(ScalarType.Float64);
        var g = x.matmul(gate.to(ScalarType.Float64).t());
        var u = x.matmul(up.to(ScalarType.Float64).t());
        return (nn.functional.silu(g) * u).matmul(down.to(ScalarType.Float64).t());
    }

    private sealed record Expert(Tensor Gate, Tensor Up, Tensor Down, Bf16SwiGluKernel Kernel);

    private static Expert NewExpert(Generator generator)
    {
        var gate = Bfloat16Valued([Ffn, Hidden], generator, 0.1);
        var up = Bfloat16Valued([Ffn, Hidden], generator, 0.1);
        var down = Bfloat16Valued([Hidden, Ffn], generator, 0.1);
        return new Expert(gate, up, down, new Bf16SwiGluKernel(Bits(gate), Bits(up), Bits(down), Hidden, Ffn));
    }

    /// <param name="rows">[n, H] float32.</param>
    /// <returns>[n, H] float32.</returns>
    private static Tensor RunKernel(Bf16SwiGluKernel kernel, Tensor rows)
    {
        var input = rows.contiguous().data<float>().ToArray();
        var result = Enumerable.Repeat(float.NaN, input.Length).ToArray(); // every element must be written
        kernel.Run(input, result, (int)rows.size(0));
        return torch.tensor(result).view(rows.size(0), Hidden);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]  // a block of four with a repeated row
    [InlineData(4)]
    [InlineData(7)]  // 4 + 3
    [InlineData(8)]
    [InlineData(11)] // 8 + 3
    [InlineData(19)] // 8 + 8 + 2 + 1
    public void Kernel_matches_a_float64_swiglu_on_the_same_weights(int rows)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator((ulong)rows);
        var expert = NewExpert(generator);
        using var kernel = expert.Kernel;
        // Gate products from about -9 to 9 reach SiLU's both tails.
        var inputs = torch.randn([rows, Hidden], generator: generator).mul(3);

        var actual = RunKernel(kernel, inputs).to(ScalarType.Float64);
        var expected = Reference(inputs, expert.Gate, expert.Up, expert.Down);
        double worst = ((actual - expected).abs().max() / expected.abs().max()).item<double>();
        output.WriteLine($"{rows} rows: largest difference from float64, relative to the largest output: {worst:E2}");
        // float32 sums of 128 and 96 terms and a float32 exp: about 1e-7 to 1e-6 of the scale. Rounding the weights or
        // rows to bfloat16 would give 1e-3.
        Assert.True(worst < 1e-5, $"relative difference {worst:E2}");
    }

    [Fact]
    public void A_row_gets_the_same_bits_alone_and_in_any_block()
    {
        using var scope = NewDisposeScope();
        var generator = new Generator(5);
        var expert = NewExpert(generator);
        using var kernel = expert.Kernel;
        var inputs = torch.randn([19, Hidden], generator: generator);
        var together = RunKernel(kernel, inputs);
        for (int r = 0; r < 19; r++)
        {
            var alone = RunKernel(kernel, inputs.narrow(0, r, 1));
            Assert.True(alone.eq(together.narrow(0, r, 1)).all().item<bool>(), $"row {r} differs alone and among 19 rows");
        }
    }

    [Fact]
    public void Sizes_that_do_not_fit_the_tiles_are_refused()
    {
        Assert.False(Bf16SwiGluKernel.Fits(96, 64));
        Assert.False(Bf16SwiGluKernel.Fits(128, 48));
        Assert.True(Bf16SwiGluKernel.Fits(4096, 14336)); // Mixtral 8x7B
        Assert.True(Bf16SwiGluKernel.Fits(2048, 1024));  // OLMoE
        var error = Assert.Throws<ArgumentException>(() => new Bf16SwiGluKernel(new ushort[96 * 64], new ushort[96 * 64], new ushort[96 * 64], 96, 64));
        Assert.Contains("multiple of 64", error.Message);
    }

    [Fact]
    public void Expert_bank_runs_bfloat16_valued_float32_weights_on_the_kernel_and_others_on_libtorch()
    {
        using var inference = torch.inference_mode();
        using var scope = NewDisposeScope();
        var generator = new Generator(3);
        long[] counts = [3, 0, 1, 9];
        var experts = counts.Select(_ => NewExpert(generator)).ToList();
        var gateUp = experts.Select(e => torch.cat([e.Gate, e.Up], 0)).ToList();
        var down = experts.Select(e => e.Down).ToList();
        Assert.Equal(Bf16SwiGluKernel.Supported, ExpertBank.ManagedKernelRuns(gateUp, down));
        // A weight bfloat16 cannot hold keeps libtorch's float32 products.
        var perturbed = gateUp.Select((w, i) => i == 2 ? w.add(1e-6f) : w).ToList();
        Assert.False(ExpertBank.ManagedKernelRuns(perturbed, down));

        var inputs = torch.randn([counts.Sum(), Hidden], generator: generator);
        using var bank = new ExpertBank(gateUp, down);
        var actual = bank.Run(inputs, counts);
        long offset = 0;
        for (int e = 0; e < counts.Length; e++)
        {
            if (counts[e] == 0) continue;
            var expected = Reference(inputs.narrow(0, offset, counts[e]), experts[e].Gate, experts[e].Up, experts[e].Down);
            var got = actual.narrow(0, offset, counts[e]).to(ScalarType.Float64);
            Assert.True(((got - expected).abs().max() / expected.abs().max()).item<double>() < 1e-5, $"expert {e}");
            offset += counts[e];
        }
        // bfloat16 rows are widened for the kernel and the result narrowed back.
        Assert.Equal(ScalarType.BFloat16, bank.Run(inputs.to(ScalarType.BFloat16), counts).dtype);
        foreach (var e in experts) e.Kernel.Dispose();
    }
}
