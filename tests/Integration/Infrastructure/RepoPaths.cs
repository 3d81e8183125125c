using System.Net;
using System.Net.Sockets;

namespace MoeServe.Integration.Tests.Infrastructure;

/// <summary>Where the repository, the built server and the tiny test model are on this machine.</summary>
public static class RepoPaths
{
    public const string ModelId = "moeserve-tiny-random";

#if DEBUG
    private const string Configuration = "Debug";
#else
    private const string Configuration = "Release";
#endif

    private static readonly Lazy<string> _root = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "MoeServe.sln"))) return dir.FullName;
        throw new InvalidOperationException($"MoeServe.sln not found above {AppContext.BaseDirectory}");
    });

    /// <summary>The repository root (the folder holding MoeServe.sln); the server's working directory.</summary>
    public static string Root => _root.Value;

    public static string ModelDir => Path.Combine(Root, "models", ModelId);

    /// <summary>
    /// MoeServe.Api.dll as built by the ProjectReference: next to the tests when the runtimeconfig came along,
    /// else the Api project's own output folder.
    /// </summary>
    public static string ServerDll
    {
        get
        {
            var candidates = new[]
            {
                AppContext.BaseDirectory,
                Path.Combine(Root, "src", "Api", "bin", Configuration, "net10.0"),
            };
            foreach (var dir in candidates)
            {
                string dll = Path.Combine(dir, "MoeServe.Api.dll");
                if (File.Exists(dll) && File.Exists(Path.Combine(dir, "MoeServe.Api.runtimeconfig.json"))) return dll;
            }
            throw new FileNotFoundException("MoeServe.Api.dll (with its runtimeconfig.json) not found in: " + string.Join(", ", candidates));
        }
    }

    /// <summary>The dotnet host that runs the tests (set by the SDK), else "dotnet" on PATH.</summary>
    public static string DotnetHost =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";

    /// <summary>Folder for things humans may want to look at after a run (server logs, screenshots).</summary>
    public static string ArtifactsDir
    {
        get
        {
            string dir = Path.Combine(AppContext.BaseDirectory, "integration-artifacts");
            Directory.CreateDirectory(dir);
            return dir;
        }
    }

    /// <summary>max_position_embeddings of the test model, read from its config.json.</summary>
    public static int ModelContextLength
    {
        get
        {
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(ModelDir, "config.json")));
            return doc.RootElement.GetProperty("max_position_embeddings").GetInt32();
        }
    }

    public static int ModelVocabSize
    {
        get
        {
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(ModelDir, "config.json")));
            return doc.RootElement.GetProperty("vocab_size").GetInt32();
        }
    }

    public static int FreeTcpPort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        try { return ((IPEndPoint)listener.LocalEndpoint).Port; }
        finally { listener.Stop(); }
    }
}
