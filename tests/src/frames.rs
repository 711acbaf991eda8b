//! Reading whole Kafka frames off a socket, for the proxies that pass them on (the hang-up
//! proxy, the answer dropper, the aborted-transaction index).

use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;

/// The largest frame a proxy passes on.
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// One whole frame, size prefix included; `None` at the end of the stream or on a frame past
/// [`MAX_FRAME`].
pub(crate) async fn read_frame(from: &mut OwnedReadHalf) -> Option<Vec<u8>> {
    let mut size = [0u8; 4];
    from.read_exact(&mut size).await.ok()?;
    let len = usize::try_from(i32::from_be_bytes(size))
        .ok()
        .filter(|&n| n <= MAX_FRAME)?;
    let mut frame = vec![0u8; 4 + len];
    frame[..4].copy_from_slice(&size);
    from.read_exact(&mut frame[4..]).await.ok()?;
    Some(frame)
}
