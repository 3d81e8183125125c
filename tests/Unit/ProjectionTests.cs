using MoeServe.Inference.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Unit.Tests;

/// <summary>Model:BatchInvariant's padded projections: a row's result must not depend on how many rows share the
/// call; and the FBGEMM-packed product for weights that float16 holds exactly.</summary>
public class ProjectionTests
{
    [Fact]
    public void Padded_small_calls_give_each_row_the_bits_of_a_large_call()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(7);
        var weight = torch.randn(512, 256).div(16); // [out, in], the shipped model's q/k/v shape
        var rows = torch.randn(16, 256);
        using var padded = new Projection(weight, Projection.BatchInvariantRows);
        var all = padded.Forward(rows); // [16, 512]: no padding needed
        for (int m = 1; m < Projection.BatchInvariantRows; m++)
        {
            var few = rows.narrow(0, 0, m);
            Assert.True(padded.Forward(few).equal(all.narrow(0, 0, m)).all().item<bool>(), $"{m} padded rows differ from the 16-row call");
            Assert.Equal([m, 512L], padded.Forward(few).shape);
        }
    }

    [Fact]
    public void A_weight_float16_holds_runs_packed_and_matches_float64()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(8);
        // A bfloat16 checkpoint's weight, loaded as float32: float16 holds it (values under 6e-5 move by at most 3e-8).
        var weight = torch.randn(4096, 256).div(16).to(ScalarType.BFloat16).to(ScalarType.Float32); // the output layer's shape
        var rows = torch.randn(9, 256);
        using var projection = new Projection(weight);
        Assert.NotNull(projection.Packed);
        var actual = projection.Forward(rows).to(ScalarType.Float64);                      // [9, 4096]
        var expected = rows.to(ScalarType.Float64).matmul(weight.to(ScalarType.Float64).t());
        double worst = ((actual - expected).abs().max() / expected.abs().max()).item<double>();
        Assert.True(worst < 1e-5, $"largest difference relative to the largest output {worst:E2}"); // float32 sums of 256 terms
        // A row's result does not depend on the rows beside it.
        Assert.True(projection.Forward(rows.narrow(0, 4, 1)).equal(projection.Forward(rows).narrow(0, 4, 1)).all().item<bool>());
    }

    [Fact]
    public void Weights_float16_cannot_hold_or_the_router_keep_the_float32_product()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(9);
        using var full = new Projection(torch.randn(512, 256).div(16));  // float32 values: float16 would round them
        Assert.False(HalfPackedGemm.HoldsLosslessly(torch.tensor(new[] { 0.1f })));
        Assert.False(HalfPackedGemm.HoldsLosslessly(torch.tensor(new[] { 70000f })));             // beyond float16's range
        Assert.True(HalfPackedGemm.HoldsLosslessly(torch.tensor(new[] { 0.25f, -3f, 1e-6f })));      // 1e-6 moves by under 3e-8
        Assert.Null(full.Packed);
        var exact = torch.randn(512, 256).div(16).to(ScalarType.Float16).to(ScalarType.Float32);
        using var router = new Projection(exact, packable: false);
        Assert.Null(router.Packed);
        var rows = torch.randn(3, 256);
        Assert.True(full.Forward(rows).equal(rows.matmul(full.Transposed)).all().item<bool>());
    }

    [Fact]
    public void Batch_invariant_mode_runs_a_packable_weight_packed_and_each_row_keeps_its_bits()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(10);
        var exact = torch.randn(512, 256).div(16).to(ScalarType.BFloat16).to(ScalarType.Float32); // q/k/v shape
        using var projection = new Projection(exact, Projection.BatchInvariantRows);
        Assert.NotNull(projection.Packed);
        var rows = torch.randn(16, 256);
        var all = projection.Forward(rows);
        for (int m = 1; m < Projection.BatchInvariantRows; m++)
            Assert.True(projection.Forward(rows.narrow(0, 0, m)).equal(all.narrow(0, 0, m)).all().item<bool>(), $"{m} rows differ from the 16-row call");
    }
}
