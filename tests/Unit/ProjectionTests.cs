using MoeServe.Inference.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Unit.Tests;

/// <summary>Model:BatchInvariant's padded projections: a row's result must not depend on how many rows share the call.</summary>
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
}
