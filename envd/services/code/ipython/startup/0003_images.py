# envd: Pillow images show up as PNG results (code-interpreter.md §5.7).
def _e2b_patch_pillow():
    try:
        from PIL import Image, ImageShow
    except ImportError:
        return
    from IPython.display import display

    class _NoViewer(ImageShow.UnixViewer):
        # Image.show() displays through IPython instead of launching a GUI viewer.
        def show_file(self, path, **options):
            return 1

        def show(self, image, **options):
            display(image)
            return 1

        def get_command_ex(self, file, **options):
            return ("true", "true")

    ImageShow._viewers.clear()
    ImageShow.register(_NoViewer, 0)

    original_save = Image.Image.save

    def save(self, fp, format=None, **params):
        # Saving to a string path first displays the image (files objects and Paths don't).
        if isinstance(fp, str):
            display(self)
        return original_save(self, fp, format, **params)

    Image.Image.save = save


_e2b_patch_pillow()
del _e2b_patch_pillow
