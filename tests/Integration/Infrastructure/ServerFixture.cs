namespace MoeServe.Integration.Tests.Infrastructure;

/// <summary>
/// One real server shared by every test of the "server" collection (tests in one collection run one after
/// another, so metrics such as moeserve_requests_running are not disturbed by other tests of it).
/// The body limit is small (64 KiB) so the 413 case needs no server of its own; everything else is the default
/// configuration from appsettings.json.
/// </summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public const int MaxRequestBodyBytes = 64 * 1024;

    private ServerProcess? _server;

    public ServerProcess Server => _server ?? throw new InvalidOperationException("server not started");
    public string BaseUrl => Server.BaseUrl;
    public HttpClient Http { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        _server = await ServerProcess.StartAsync("shared", $"--Server:MaxRequestBodyBytes={MaxRequestBodyBytes}");
        Http = new HttpClient { BaseAddress = _server.BaseUri, Timeout = TimeSpan.FromSeconds(120) };
    }

    public async Task DisposeAsync()
    {
        Http?.Dispose();
        if (_server is not null) await _server.DisposeAsync();
    }
}

[CollectionDefinition(Name)]
public sealed class ServerCollection : ICollectionFixture<ServerFixture>
{
    public const string Name = "MoeServe server";
}
