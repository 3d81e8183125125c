using System.Text.Encodings.Web;
using System.Text.Json;

namespace MoeServe.Training.Data;

/// <summary>
/// Writes JSON byte-for-byte reproducibly: "\n" line ends on every OS, and the relaxed encoder so that
/// "&lt;|im_start|&gt;" and byte-level tokens ("Ġthe") stay readable instead of becoming \u escapes.
/// </summary>
public static class JsonFiles
{
    public static readonly JsonWriterOptions Compact = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static readonly JsonWriterOptions Indented = new()
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Indented = true,
        IndentSize = 2,
        NewLine = "\n",
    };

    /// <summary>Writes one indented JSON document to <paramref name="path"/>, ending with a newline.</summary>
    public static void Write(string path, Action<Utf8JsonWriter> write)
    {
        using var stream = File.Create(path);
        using (var writer = new Utf8JsonWriter(stream, Indented)) write(writer);
        stream.WriteByte((byte)'\n');
    }
}
