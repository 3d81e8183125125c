using Microsoft.Extensions.Options;
using MoeServe.Api.Hosting;

var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = ContentRoot.Find() });
builder.AddMoeServe();
var app = builder.Build();
app.UseMoeServe();
try
{
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

/// <summary>Entry point; public so that tests can reference the assembly.</summary>
public partial class Program;
