"""Data: loaders (COCO captions, GQA questions, VG join), the miniature world, VICT instructions, collation."""
