using MoeServe.Integration.Tests.Infrastructure;

namespace MoeServe.Integration.Tests;

/// <summary>A bad setting stops the server at start with one line on stderr that names the key.</summary>
public sealed class BadConfigurationTests
{
    private static readonly TimeSpan ExitTimeout = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData("--Engine:MaxRunningSequences=0", "Engine:MaxRunningSequences")]
    [InlineData("--Engine:MaxBatchedTokens=1", "Engine:MaxBatchedTokens")]
    [InlineData("--Model:ComputeDtype=float64", "Model:ComputeDtype")]
    [InlineData("--Model:Device=tpu", "Model:Device")]
    [InlineData("--Routing:Policy=nonsense", "Routing:Policy")]
    [InlineData("--Routing:CapacityFactor=-1", "Routing:CapacityFactor")]
    [InlineData("--Routing:Strategy=loudest", "Routing:Strategy")]
    [InlineData("--Server:MaxRequestBodyBytes=10", "Server:MaxRequestBodyBytes")]
    [InlineData("--Model:Path=/nonexistent", "/nonexistent/config.json")]
    public async Task Bad_setting_stops_the_server_with_one_line_naming_it(string argument, string named)
    {
        var result = await ServerProcess.RunToExitAsync(ExitTimeout, argument);
        Assert.True(result.Exited, $"{argument}: the server was still running after {ExitTimeout.TotalSeconds}s\n{result}");
        Assert.True(result.ExitCode != 0, $"{argument}: exit code 0\n{result}");

        var lines = result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.True(lines.Length == 1, $"{argument}: expected one line on stderr, got {lines.Length}\n{result}");
        Assert.Contains(named, lines[0]);
        Assert.DoesNotContain("   at ", result.Stderr);
    }

    [Fact]
    public async Task Unknown_setting_in_a_section_stops_the_server_naming_it()
    {
        var result = await ServerProcess.RunToExitAsync(ExitTimeout, "--Engine:MaxRuningSequences=8");
        Assert.True(result.Exited && result.ExitCode != 0, result.ToString());
        var lines = result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var line = Assert.Single(lines);
        Assert.Contains("MaxRuningSequences", line);
    }
}
