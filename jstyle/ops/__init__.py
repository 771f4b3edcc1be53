"""Operations on images and features: losses, masks, tiles, patches, optical flow."""
