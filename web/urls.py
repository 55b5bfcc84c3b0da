from django.urls import path

from web import views

app_name = "web"
urlpatterns = [
    path("", views.playground_page, name="playground"),
    path("dev-token", views.dev_token, name="dev-token"),
]
