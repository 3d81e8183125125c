using Microsoft.Extensions.Options;
using MoeServe.Api.Hosting;

try
{
    var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = ContentRoot.Find() });
    builder.AddMoeServe();
    var app = builder.Build();
    app.ValidateConfiguration();
    app.UseMoeServe();
    await app.RunAsync();
    return Environment.ExitCode;
}
catch (OptionsValidationException e)
{
    // One line naming the bad key(s), no stack trace.
    Console.Error.WriteLine($"configuration error: {string.Join("; ", e.Failures)}");
    return 2;
}
catch (InvalidOperationException e) when (e.Message.Contains("configuration", StringComparison.OrdinalIgnoreCase))
{
    Console.Error.WriteLine($"configuration error: {e.Message.ReplaceLineEndings(" ")}");
    return 2;
}
catch (OperationCanceledException) when (Environment.ExitCode != 0)
{
    // The model failed to load (already reported in one line) while the server was still starting.
    return Environment.ExitCode;
}

/// <summary>Entry point; public so that tests can reference the assembly.</summary>
public partial class Program;
