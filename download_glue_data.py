"""Download GLUE into the official layout: ``python download_glue_data.py --data_dir DIR --tasks all``.

Without internet access, add ``--mirror URL_OR_DIR`` (or set ``GLUE_MIRROR``); see camtl/data/download.py.
"""

from camtl.data.download import main

if __name__ == "__main__":
    main()
