using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Training.Model;

/// <summary>The element types <see cref="SafetensorsWriter"/> can store.</summary>
public enum SafetensorsDtype
{
    /// <summary>IEEE float32, exact.</summary>
    F32,
    /// <summary>bfloat16: the upper 16 bits of float32, rounded to nearest even.</summary>
    BF16,
}

/// <summary>
/// Writes a .safetensors file by hand (TorchSharp has no writer): an 8-byte little-endian header length,
/// a JSON header mapping each name to {dtype, shape, data_offsets} (plus __metadata__ {"format": "pt"},
/// which Hugging Face transformers requires), padded with spaces to a multiple of 8, then the raw
/// little-endian bytes of every tensor in header order.
/// </summary>
public static class SafetensorsWriter
{
    /// <param name="tensors">Name and float32 tensor (any shape, any device) of every entry; names must be unique.</param>
    public static void Write(string path, IReadOnlyList<(string Name, Tensor Tensor)> tensors, SafetensorsDtype dtype)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors is little-endian; this writer assumes a little-endian host");
        int elementSize = dtype == SafetensorsDtype.F32 ? 4 : 2;
        string dtypeName = dtype == SafetensorsDtype.F32 ? "F32" : "BF16";
        if (tensors.Select(t => t.Name).Distinct(StringComparer.Ordinal).Count() != tensors.Count)
            throw new ArgumentException("tensor names must be unique");

        using var header = new MemoryStream();
        using (var json = new Utf8JsonWriter(header))
        {
            json.WriteStartObject();
            json.WriteStartObject("__metadata__");
            json.WriteString("format", "pt");
            json.WriteEndObject();
            long offset = 0;
            foreach (var (name, tensor) in tensors)
            {
                if (tensor.dtype != ScalarType.Float32) throw new ArgumentException($"tensor '{name}' is {tensor.dtype}; the writer takes float32");
                long bytes = tensor.numel() * elementSize;
                json.WriteStartObject(name);
                json.WriteString("dtype", dtypeName);
                json.WriteStartArray("shape");
                foreach (var d in tensor.shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + bytes);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += bytes;
            }
            json.WriteEndObject();
        }
        int padding = (int)((8 - header.Length % 8) % 8);
        for (int i = 0; i < padding; i++) header.WriteByte((byte)' ');

        string temporary = path + ".tmp";
        using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(length, header.Length);
            file.Write(length);
            header.Position = 0;
            header.CopyTo(file);
            foreach (var (_, tensor) in tensors)
            {
                float[] values;
                using (var host = tensor.detach().cpu().contiguous()) values = host.data<float>().ToArray();
                if (dtype == SafetensorsDtype.F32) file.Write(MemoryMarshal.AsBytes(values.AsSpan()));
                else file.Write(MemoryMarshal.AsBytes(ToBfloat16(values).AsSpan()));
            }
        }
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>float32 to bfloat16 bits, rounding to nearest even; NaN stays a (quiet) NaN.</summary>
    public static ushort[] ToBfloat16(ReadOnlySpan<float> values)
    {
        var result = new ushort[values.Length];
        for (int i = 0; i < values.Length; i++) result[i] = ToBfloat16(values[i]);
        return result;
    }

    /// <summary>float32 to bfloat16 bits, rounding to nearest even; NaN stays a (quiet) NaN.</summary>
    public static ushort ToBfloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x0040);
        // Add 0x7FFF plus the lowest kept bit: ties (exactly 0x8000 below) round to the even neighbour.
        uint rounding = 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)((bits + rounding) >> 16);
    }
}
