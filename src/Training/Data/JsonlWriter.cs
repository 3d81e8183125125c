using System.Text.Json;
using MoeServe.Training.Data.Tasks;

namespace MoeServe.Training.Data;

/// <summary>The .jsonl files of docs/training-data-format.md: one compact JSON object per line.</summary>
public static class JsonlWriter
{
    /// <summary>train/ and heldout/ files: {"text": "..."} per document.</summary>
    public static void WriteTexts(string path, IEnumerable<string> texts) => WriteLines(path, texts, (writer, text) =>
    {
        writer.WriteStartObject();
        writer.WriteString("text", text);
        writer.WriteEndObject();
    });

    /// <summary>tasks/ files: {"messages": [{"role": "user", "content": "..."}], "answer": "..."} per item.</summary>
    public static void WriteTasks(string path, IEnumerable<TaskItem> items) => WriteLines(path, items, (writer, item) =>
    {
        writer.WriteStartObject();
        writer.WriteStartArray("messages");
        writer.WriteStartObject();
        writer.WriteString("role", "user");
        writer.WriteString("content", item.Question);
        writer.WriteEndObject();
        writer.WriteEndArray();
        writer.WriteString("answer", item.Answer);
        writer.WriteEndObject();
    });

    private static void WriteLines<T>(string path, IEnumerable<T> items, Action<Utf8JsonWriter, T> write)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var stream = new BufferedStream(File.Create(path), 1 << 16);
        using var writer = new Utf8JsonWriter(stream, JsonFiles.Compact);
        foreach (var item in items)
        {
            write(writer, item);
            writer.Flush();
            stream.WriteByte((byte)'\n');
            // A writer holds one JSON value; Reset lets it start the next line's object.
            writer.Reset();
        }
    }
}
