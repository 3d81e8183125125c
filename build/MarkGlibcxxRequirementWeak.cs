using System;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

/// <summary>
/// Sets VER_FLG_WEAK on the GLIBCXX_3.4.32 version requirement of every libLibTorchSharp.so below a
/// folder, when the system libstdc++ does not provide that version. Idempotent.
/// </summary>
public class MarkGlibcxxRequirementWeak : Task
{
    private const string Version = "GLIBCXX_3.4.32";
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const ushort VerFlagWeak = 0x2;

    [Required] public string Directory { get; set; } = "";

    public override bool Execute()
    {
        if (!System.IO.Directory.Exists(Directory) || SystemLibstdcxxHasVersion()) return true;
        foreach (var path in System.IO.Directory.EnumerateFiles(Directory, "libLibTorchSharp.so", SearchOption.AllDirectories))
        {
            int patched = Patch(path);
            if (patched > 0) Log.LogMessage(MessageImportance.High, $"Marked {Version} weak in {path}");
        }
        return !Log.HasLoggedErrors;
    }

    private static bool SystemLibstdcxxHasVersion()
    {
        foreach (var candidate in new[] { "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6",
                                          "/usr/lib/aarch64-linux-gnu/libstdc++.so.6", "/usr/lib/libstdc++.so.6" })
        {
            if (!File.Exists(candidate)) continue;
            var text = Encoding.ASCII.GetString(File.ReadAllBytes(candidate));
            return text.Contains(Version + "\0");
        }
        return false; // unknown layout: patching is harmless (the flag only relaxes the check)
    }

    /// <summary>Walks the ELF64 verneed chain and ORs VER_FLG_WEAK into the matching aux entry.</summary>
    private int Patch(string path)
    {
        byte[] elf = File.ReadAllBytes(path);
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[4] != 2 /* ELFCLASS64 */) return 0;
        ulong shoff = BitConverter.ToUInt64(elf, 0x28);
        int shentsize = BitConverter.ToUInt16(elf, 0x3A), shnum = BitConverter.ToUInt16(elf, 0x3C);
        int patched = 0;
        for (int i = 0; i < shnum; i++)
        {
            int sh = (int)shoff + i * shentsize;
            if (BitConverter.ToUInt32(elf, sh + 4) != ShtGnuVerneed) continue;
            int offset = (int)BitConverter.ToUInt64(elf, sh + 0x18);
            int link = (int)BitConverter.ToUInt32(elf, sh + 0x28);
            int count = (int)BitConverter.ToUInt32(elf, sh + 0x2C);
            int strtab = (int)BitConverter.ToUInt64(elf, (int)shoff + link * shentsize + 0x18);
            int need = offset;
            for (int n = 0; n < count; n++)
            {
                int auxCount = BitConverter.ToUInt16(elf, need + 2);
                int aux = need + (int)BitConverter.ToUInt32(elf, need + 8);
                for (int a = 0; a < auxCount; a++)
                {
                    int nameOffset = strtab + (int)BitConverter.ToUInt32(elf, aux + 8);
                    int end = Array.IndexOf(elf, (byte)0, nameOffset);
                    string name = Encoding.ASCII.GetString(elf, nameOffset, end - nameOffset);
                    ushort flags = BitConverter.ToUInt16(elf, aux + 4);
                    if (name == Version && (flags & VerFlagWeak) == 0)
                    {
                        BitConverter.GetBytes((ushort)(flags | VerFlagWeak)).CopyTo(elf, aux + 4);
                        patched++;
                    }
                    aux += (int)BitConverter.ToUInt32(elf, aux + 12);
                }
                need += (int)BitConverter.ToUInt32(elf, need + 12);
            }
        }
        if (patched > 0) File.WriteAllBytes(path, elf);
        return patched;
    }
}
