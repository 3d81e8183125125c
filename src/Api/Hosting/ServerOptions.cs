using System.ComponentModel.DataAnnotations;

namespace MoeServe.Api.Hosting;

/// <summary>HTTP-level settings (configuration section "Server").</summary>
public sealed class ServerOptions
{
    public const string Section = "Server";

    /// <summary>When non-empty, /v1 requests need "Authorization: Bearer KEY" with one of these keys.</summary>
    public List<string> ApiKeys { get; set; } = [];

    /// <summary>Largest request body accepted; larger ones get 413.</summary>
    [Range(1024, 1L << 31)] public long MaxRequestBodyBytes { get; set; } = 4 * 1024 * 1024;
}
