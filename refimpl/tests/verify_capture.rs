// SPDX-License-Identifier: MIT OR Apache-2.0
//! Capture reader: formats, byte orders, timestamp resolutions, link types, skips, and
//! truncated or corrupt files.

use std::io::Cursor;
use std::ops::ControlFlow;

use proptest::prelude::*;
use tcpao_refimpl::capture::writer::{ByteOrder, PcapWriter, PcapngWriter, encapsulate};
use tcpao_refimpl::capture::{
    CaptureErrorKind, CaptureFormat, CaptureReader, LinkType, SkipReason, Timestamp,
};

/// A minimal IPv4/TCP packet whose last payload byte is `tag` (not a valid checksum; the
/// reader does not care).
fn ip4(tag: u8) -> Vec<u8> {
    let mut p = vec![
        0x45, 0, 0, 41, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    p.extend_from_slice(&[
        0x9c, 0x40, 0, 179, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff,
    ]);
    p.extend_from_slice(&[0, 0, 0, 0, tag]);
    p
}

fn ip6(tag: u8) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 21, 6, 64];
    p.extend_from_slice(&[0xfd; 16]);
    p.extend_from_slice(&[0xfe; 16]);
    p.extend_from_slice(&[
        0x9c, 0x40, 0, 179, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff,
    ]);
    p.extend_from_slice(&[0, 0, 0, 0, tag]);
    p
}

struct Seen {
    number: u64,
    offset: u64,
    ts: Timestamp,
    ip: Vec<u8>,
    truncated: bool,
}

fn read_all(
    bytes: Vec<u8>,
) -> (
    Vec<Seen>,
    Result<bool, tcpao_refimpl::capture::CaptureError>,
) {
    let mut seen = Vec::new();
    let mut r = match CaptureReader::new(Cursor::new(bytes)) {
        Ok(r) => r,
        Err(e) => return (seen, Err(e)),
    };
    let res = r.for_each_frame(|f| {
        seen.push(Seen {
            number: f.number,
            offset: f.offset,
            ts: f.timestamp,
            ip: f.ip.to_vec(),
            truncated: f.is_truncated(),
        });
        ControlFlow::Continue(())
    });
    (seen, res)
}

fn ts(secs: i64, nanos: u32) -> Timestamp {
    Timestamp { secs, nanos }
}

fn pcap(order: ByteOrder, nanos: bool, lt: LinkType, packets: &[Vec<u8>]) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), order, nanos, lt, 262_144).unwrap();
    for (i, p) in packets.iter().enumerate() {
        w.write_frame(
            ts(1_700_000_000 + i as i64, 123_456_789),
            &encapsulate(lt, p),
        )
        .unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn pcap_both_byte_orders_and_resolutions() {
    for order in [ByteOrder::Little, ByteOrder::Big] {
        for nanos in [false, true] {
            let pk = vec![ip4(1), ip6(2), ip4(3)];
            let file = pcap(order, nanos, LinkType::Ethernet, &pk);
            let r = CaptureReader::new(Cursor::new(file.clone())).unwrap();
            assert_eq!(r.format(), CaptureFormat::Pcap);
            let (seen, res) = read_all(file);
            assert_eq!(res, Ok(true), "{order:?} nanos={nanos}");
            assert_eq!(seen.len(), 3);
            for (i, s) in seen.iter().enumerate() {
                assert_eq!(s.number, i as u64 + 1);
                assert_eq!(s.ip, pk[i]);
                let want_ns = if nanos { 123_456_789 } else { 123_456_000 };
                assert_eq!(s.ts, ts(1_700_000_000 + i as i64, want_ns));
            }
            // Offsets: 24-byte file header, then 16-byte record headers.
            assert_eq!(seen[0].offset, 24);
            assert_eq!(seen[1].offset, 24 + 16 + 14 + pk[0].len() as u64);
        }
    }
}

#[test]
fn pcapng_interfaces_resolutions_and_byte_orders() {
    for order in [ByteOrder::Little, ByteOrder::Big] {
        let mut w = PcapngWriter::new(Vec::new(), order).unwrap();
        let eth = w.add_interface(LinkType::Ethernet, 0, None).unwrap();
        let raw = w.add_interface(LinkType::Raw(101), 0, Some(9)).unwrap();
        let sll2 = w
            .add_interface(LinkType::LinuxSll2, 0, Some(0x80 | 20))
            .unwrap();
        w.write_frame(
            eth,
            ts(10, 5_000),
            &encapsulate(LinkType::Ethernet, &ip4(1)),
        )
        .unwrap();
        w.write_raw_block(5, &[0; 12]).unwrap(); // interface statistics: not a frame
        w.write_frame(raw, ts(11, 123_456_789), &ip6(2)).unwrap();
        w.write_frame(
            sll2,
            ts(12, 500_000_000),
            &encapsulate(LinkType::LinuxSll2, &ip4(3)),
        )
        .unwrap();
        let file = w.finish().unwrap();
        let r = CaptureReader::new(Cursor::new(file.clone())).unwrap();
        assert_eq!(r.format(), CaptureFormat::Pcapng);
        let (seen, res) = read_all(file);
        assert_eq!(res, Ok(true));
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].ip, ip4(1));
        assert_eq!(seen[0].ts, ts(10, 5_000));
        assert_eq!(seen[1].ip, ip6(2));
        assert_eq!(seen[1].ts, ts(11, 123_456_789));
        assert_eq!(seen[2].ip, ip4(3));
        assert_eq!(seen[2].ts, ts(12, 500_000_000));
        assert_eq!(seen.iter().map(|s| s.number).collect::<Vec<_>>(), [1, 2, 3]);
    }
}

#[test]
fn every_link_type() {
    let lts = [
        LinkType::Ethernet,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::Raw(101),
        LinkType::Raw(12),
        LinkType::Raw(14),
        LinkType::Ipv4,
        LinkType::Null,
        LinkType::Loop,
    ];
    for lt in lts {
        let pk = vec![ip4(7)];
        let (seen, res) = read_all(pcap(ByteOrder::Little, false, lt, &pk));
        assert_eq!(res, Ok(true), "{lt}");
        assert_eq!(seen.len(), 1, "{lt}");
        assert_eq!(seen[0].ip, pk[0], "{lt}");
    }
    let pk = vec![ip6(8)];
    let (seen, _) = read_all(pcap(ByteOrder::Big, true, LinkType::Ipv6, &pk));
    assert_eq!(seen[0].ip, pk[0]);
}

#[test]
fn big_endian_null_loopback_family() {
    // DLT_NULL written on a big-endian host: the family is in network order.
    let mut frame = 2u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&ip4(9));
    let mut w = PcapWriter::new(Vec::new(), ByteOrder::Big, false, LinkType::Null, 65535).unwrap();
    w.write_frame(ts(1, 0), &frame).unwrap();
    let (seen, res) = read_all(w.finish().unwrap());
    assert_eq!(res, Ok(true));
    assert_eq!(seen[0].ip, ip4(9));
}

#[test]
fn skipped_frames_are_counted_by_reason() {
    let mut w = PcapWriter::new(
        Vec::new(),
        ByteOrder::Little,
        false,
        LinkType::Ethernet,
        65535,
    )
    .unwrap();
    let mut arp = vec![0xff; 12];
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    w.write_frame(ts(1, 0), &arp).unwrap();
    w.write_frame(ts(1, 0), &[0; 10]).unwrap();
    w.write_frame(ts(1, 0), &encapsulate(LinkType::Ethernet, &ip4(1)))
        .unwrap();
    let file = w.finish().unwrap();
    let mut r = CaptureReader::new(Cursor::new(file)).unwrap();
    let mut numbers = Vec::new();
    assert_eq!(
        r.for_each_frame(|f| {
            numbers.push(f.number);
            ControlFlow::Continue(())
        }),
        Ok(true)
    );
    assert_eq!(numbers, [3]);
    assert_eq!(r.skipped().get(SkipReason::NotIp), 1);
    assert_eq!(r.skipped().get(SkipReason::LinkTruncated), 1);
    assert_eq!(r.skipped().total(), 2);
    assert_eq!(r.frames(), 3);

    // An unsupported link type skips every frame.
    let file = pcap(
        ByteOrder::Little,
        false,
        LinkType::Other(147),
        &[ip4(1), ip4(2)],
    );
    let mut r = CaptureReader::new(Cursor::new(file)).unwrap();
    r.for_each_frame(|_| panic!("no frame expected")).unwrap();
    assert_eq!(r.skipped().get(SkipReason::UnsupportedLinkType), 2);
}

#[test]
fn snaplen_cut_frames_are_flagged() {
    let mut w =
        PcapWriter::new(Vec::new(), ByteOrder::Little, false, LinkType::Raw(101), 30).unwrap();
    w.write_frame(ts(1, 0), &ip4(1)).unwrap();
    let (seen, res) = read_all(w.finish().unwrap());
    assert_eq!(res, Ok(true));
    assert!(seen[0].truncated);
    assert_eq!(seen[0].ip.len(), 30);
}

#[test]
fn truncated_file_names_frame_and_offset_after_delivering_earlier_frames() {
    let pk: Vec<_> = (0..5).map(ip4).collect();
    for (order, nanos) in [(ByteOrder::Little, false), (ByteOrder::Big, true)] {
        let file = pcap(order, nanos, LinkType::Ethernet, &pk);
        let rec = 16 + 14 + pk[0].len();
        // Cut in the middle of the 4th record's data.
        let cut = 24 + 3 * rec + 20;
        let (seen, res) = read_all(file[..cut].to_vec());
        assert_eq!(seen.len(), 3);
        let err = res.unwrap_err();
        assert_eq!(err.kind, CaptureErrorKind::Truncated);
        assert_eq!(err.frame, 4);
        assert_eq!(err.offset, (24 + 3 * rec) as u64);
        let msg = err.to_string();
        assert!(
            msg.contains("frame 4") && msg.contains(&format!("{}", 24 + 3 * rec)),
            "{msg}"
        );
    }
    // pcapng cut inside a block.
    let mut w = PcapngWriter::new(Vec::new(), ByteOrder::Little).unwrap();
    let i = w.add_interface(LinkType::Raw(101), 0, None).unwrap();
    for p in &pk {
        w.write_frame(i, ts(1, 0), p).unwrap();
    }
    let file = w.finish().unwrap();
    let (seen, res) = read_all(file[..file.len() - 5].to_vec());
    assert_eq!(seen.len(), 4);
    let err = res.unwrap_err();
    assert_eq!((err.kind, err.frame), (CaptureErrorKind::Truncated, 5));
}

#[test]
fn absurd_record_length_is_an_error_not_an_allocation() {
    let mut file = pcap(ByteOrder::Little, false, LinkType::Raw(101), &[ip4(1)]);
    let second = file.len();
    file.extend_from_slice(&[0; 8]);
    file.extend_from_slice(&0x7fff_ffffu32.to_le_bytes());
    file.extend_from_slice(&0x7fff_ffffu32.to_le_bytes());
    file.extend_from_slice(&[0x45; 100]);
    let (seen, res) = read_all(file);
    assert_eq!(seen.len(), 1);
    let err = res.unwrap_err();
    assert_eq!(err.frame, 2);
    assert_eq!(err.offset, second as u64);
    assert!(
        matches!(err.kind, CaptureErrorKind::RecordTooLarge(_)),
        "{err}"
    );
}

#[test]
fn large_records_grow_the_buffer() {
    // A 2 MiB record (bigger than the initial 1 MiB buffer) between small ones.
    let mut big = ip4(1);
    big.resize(2 << 20, 0xab);
    let pk = vec![ip4(0), big, ip4(2)];
    let mut w = PcapWriter::new(
        Vec::new(),
        ByteOrder::Little,
        false,
        LinkType::Raw(101),
        4 << 20,
    )
    .unwrap();
    for p in &pk {
        w.write_frame(ts(1, 0), p).unwrap();
    }
    let (seen, res) = read_all(w.finish().unwrap());
    assert_eq!(res, Ok(true));
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].ip.len(), 2 << 20);
}

#[test]
fn not_a_capture_and_empty() {
    let e = CaptureReader::new(Cursor::new(b"hello world, not a pcap".to_vec())).unwrap_err();
    assert_eq!(e.kind, CaptureErrorKind::NotACapture);
    let e = CaptureReader::new(Cursor::new(Vec::new())).unwrap_err();
    assert_eq!(e.kind, CaptureErrorKind::Empty);
    let e = CaptureReader::open("/nonexistent/capture.pcap").unwrap_err();
    assert!(matches!(e.kind, CaptureErrorKind::Io(_)));
}

#[test]
fn many_frames_stream_through_a_bounded_buffer() {
    // 20,000 frames (~1.4 MB) pass through the 1 MiB buffer several times.
    let pk: Vec<_> = (0..20_000u32).map(|i| ip4(i as u8)).collect();
    let (seen, res) = read_all(pcap(ByteOrder::Little, true, LinkType::LinuxSll, &pk));
    assert_eq!(res, Ok(true));
    assert_eq!(seen.len(), 20_000);
    assert_eq!(seen[19_999].number, 20_000);
    assert_eq!(seen[19_999].ip, pk[19_999]);
}

fn sample_files() -> Vec<Vec<u8>> {
    let pk = vec![ip4(1), ip6(2), ip4(3)];
    let mut ng = PcapngWriter::new(Vec::new(), ByteOrder::Big).unwrap();
    let i = ng.add_interface(LinkType::Ethernet, 0, Some(9)).unwrap();
    for p in &pk {
        ng.write_frame(i, ts(5, 5), &encapsulate(LinkType::Ethernet, p))
            .unwrap();
    }
    vec![
        pcap(ByteOrder::Little, false, LinkType::Ethernet, &pk),
        pcap(ByteOrder::Big, true, LinkType::LinuxSll2, &pk),
        ng.finish().unwrap(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = read_all(bytes);
    }

    #[test]
    fn random_bytes_after_a_valid_header_never_panic(
        which in 0usize..3,
        tail in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut f = sample_files()[which].clone();
        let keep = if which == 2 { 28 } else { 24 };
        f.truncate(keep);
        f.extend_from_slice(&tail);
        let _ = read_all(f);
    }

    #[test]
    fn every_truncation_is_a_clean_error_or_end(which in 0usize..3, cut in 0usize..400) {
        let full = sample_files()[which].clone();
        let cut = cut.min(full.len());
        let (seen, res) = read_all(full[..cut].to_vec());
        let (all, _) = read_all(full.clone());
        // Whatever was delivered is a prefix of the full capture's frames.
        prop_assert!(seen.len() <= all.len());
        for (a, b) in seen.iter().zip(all.iter()) {
            prop_assert_eq!(&a.ip, &b.ip);
        }
        if cut < full.len() && cut > 0 {
            if let Err(e) = res {
                prop_assert!(e.frame as usize >= seen.len());
            }
        }
    }

    #[test]
    fn flipped_bytes_never_panic(which in 0usize..3, at in 0usize..400, val in any::<u8>()) {
        let mut f = sample_files()[which].clone();
        let at = at % f.len();
        f[at] = val;
        let _ = read_all(f);
    }
}
