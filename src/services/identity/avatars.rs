//! Avatars: whatever picture a person uploads (PNG, JPEG, GIF or WebP, within the 1 MiB
//! body limit) becomes a small square PNG made here, so the database holds a few KiB per
//! user and browsers are never served the uploaded bytes themselves.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{ImageFormat, ImageReader, Limits};

use crate::db::ids::UserId;
use crate::db::{Db, DbError, users};

/// The side of the stored square, in pixels (shown at up to 48 CSS pixels, so sharp on
/// screens with twice the density).
pub const AVATAR_SIDE: u32 = 96;
/// Larger pictures are refused before they are decoded: a small file can claim a huge
/// image (a decompression bomb), and decoding is bounded to what these allow.
const MAX_SIDE: u32 = 4096;
const MAX_DECODE_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum AvatarError {
    #[error("that is not a picture this server reads (PNG, JPEG, GIF or WebP)")]
    NotAPicture,
    #[error("the picture is larger than {MAX_SIDE} × {MAX_SIDE} pixels")]
    TooLarge,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The centre square of the picture in `bytes`, resized to [`AVATAR_SIDE`], as PNG.
pub fn square_png(bytes: &[u8]) -> Result<Vec<u8>, AvatarError> {
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|_| AvatarError::NotAPicture)?;
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP) => {}
        _ => return Err(AvatarError::NotAPicture),
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let picture = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => AvatarError::TooLarge,
        _ => AvatarError::NotAPicture,
    })?;
    let side = picture.width().min(picture.height());
    if side == 0 {
        return Err(AvatarError::NotAPicture);
    }
    let square = picture.crop_imm((picture.width() - side) / 2, (picture.height() - side) / 2, side, side);
    let small = square.resize_exact(AVATAR_SIDE, AVATAR_SIDE, FilterType::Lanczos3).to_rgba8();
    let mut png = Vec::new();
    small.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).map_err(|_| AvatarError::NotAPicture)?;
    Ok(png)
}

/// Decodes at a time: each may take up to [`MAX_DECODE_BYTES`], so many uploads at once
/// cannot add up to more than this many times that.
const DECODES_AT_ONCE: usize = 2;
static DECODES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(DECODES_AT_ONCE);

/// Makes the avatar from the uploaded picture (off the async threads: decoding is CPU work)
/// and stores it.
pub async fn set(db: &Db, user: UserId, upload: Vec<u8>) -> Result<(), AvatarError> {
    let turn = DECODES.acquire().await.map_err(|e| DbError::Task(e.to_string()))?;
    // The turn goes with the decode: a client that gives up does not free it early.
    let png = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        square_png(&upload)
    })
    .await
    .map_err(|e| DbError::Task(e.to_string()))??;
    db.write(move |c| users::set_avatar(c, user, Some(&png))).await?;
    Ok(())
}

pub async fn remove(db: &Db, user: UserId) -> Result<(), DbError> {
    db.write(move |c| users::set_avatar(c, user, None)).await
}

pub async fn get(db: &Db, user: UserId) -> Result<Option<Vec<u8>>, DbError> {
    db.read(move |c| users::avatar(c, user)).await
}

/// Up to two initials of a name, for people without an avatar ("Ada Lovelace" → "AL").
pub fn initials(name: &str) -> String {
    let letters: String = name.split_whitespace().filter_map(|word| word.chars().next()).take(2).collect();
    if letters.is_empty() { "?".into() } else { letters.to_uppercase() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
        let picture = image::RgbImage::from_fn(width, height, |x, _| image::Rgb([(x % 256) as u8, 80, 160]));
        let mut bytes = Vec::new();
        picture.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
        bytes
    }

    #[test]
    fn any_picture_becomes_a_small_square_png() {
        for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Gif, ImageFormat::WebP] {
            let png = square_png(&encoded(640, 200, format)).unwrap();
            let made = image::load_from_memory_with_format(&png, ImageFormat::Png).unwrap();
            assert_eq!((made.width(), made.height()), (AVATAR_SIDE, AVATAR_SIDE), "{format:?}");
        }
    }

    #[test]
    fn junk_and_huge_pictures_are_refused() {
        // A GIF header claiming 1 × 1 pixels, then nothing.
        assert!(matches!(square_png(b"GIF89a\x01\x00\x01\x00"), Err(AvatarError::NotAPicture)));
        assert!(matches!(square_png(b"<svg xmlns='http://www.w3.org/2000/svg'/>"), Err(AvatarError::NotAPicture)));
        assert!(matches!(square_png(&encoded(MAX_SIDE + 1, 1, ImageFormat::Png)), Err(AvatarError::TooLarge)));
    }

    #[test]
    fn initials_come_from_the_first_two_words() {
        assert_eq!(initials("Ada Lovelace Byron"), "AL");
        assert_eq!(initials("émile"), "É");
        assert_eq!(initials("  "), "?");
    }
}
